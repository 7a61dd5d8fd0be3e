"""Imports every domain's models so the metadata is complete (Alembic, tests)."""

from app.auth.models import ApiKey, AuditEntry
from app.core.db import Base
from app.datasources.models import DataBatch
from app.monitoring.models import MetricObservation
from app.pipelines.models import Pipeline
from app.registry.models import ArtifactChunk, ModelVersion, Promotion
from app.runs.models import Run, RunStep
from app.webhooks.models import WebhookDelivery

__all__ = [
    "ApiKey",
    "ArtifactChunk",
    "AuditEntry",
    "Base",
    "DataBatch",
    "MetricObservation",
    "ModelVersion",
    "Pipeline",
    "Promotion",
    "Run",
    "RunStep",
    "WebhookDelivery",
]
