"""Imports every domain's models so the metadata is complete (Alembic, tests)."""

from app.auth.models import ApiKey, AuditEntry
from app.core.db import Base
from app.datasources.models import DataBatch
from app.events.models import Delivery, Event, Subscription
from app.monitoring.models import MetricObservation
from app.pipelines.models import Pipeline
from app.registry.models import ModelVersion, Promotion
from app.runs.models import Run, RunStep
from app.webhooks.models import WebhookDelivery

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "DataBatch",
    "Delivery",
    "Event",
    "MetricObservation",
    "ModelVersion",
    "Pipeline",
    "Promotion",
    "Run",
    "RunStep",
    "Subscription",
    "WebhookDelivery",
]
