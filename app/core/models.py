"""Imports every domain's models so the metadata is complete (Alembic, tests)."""

from app.core.db import Base
from app.datasources.models import DataBatch
from app.pipelines.models import Pipeline
from app.registry.models import ModelVersion, Promotion
from app.runs.models import Run, RunStep

__all__ = ["Base", "DataBatch", "ModelVersion", "Pipeline", "Promotion", "Run", "RunStep"]
