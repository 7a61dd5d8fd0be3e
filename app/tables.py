"""Imports every domain's models so the metadata is complete (Alembic, tests)."""

from app.auth.models import ApiKey, AuditEntry, DashboardSession
from app.core.db import Base
from app.datasources.models import DataBatch
from app.events.models import Delivery, Event, Subscription
from app.monitoring.models import MetricObservation
from app.pipelines.models import Pipeline
from app.registry.models import ArtifactChunk, ModelVersion, Promotion
from app.runs.models import Run, RunRollup, RunStep
from app.webhooks.models import WebhookDelivery

__all__ = [
    "ApiKey",
    "ArtifactChunk",
    "AuditEntry",
    "Base",
    "DashboardSession",
    "DataBatch",
    "Delivery",
    "Event",
    "MetricObservation",
    "ModelVersion",
    "Pipeline",
    "Promotion",
    "Run",
    "RunRollup",
    "RunStep",
    "Subscription",
    "WebhookDelivery",
]
