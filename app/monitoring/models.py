from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.time import utcnow


class MetricObservation(Base):
    """A value monitoring posted about the production model (live accuracy, say)."""

    __tablename__ = "metric_observations"
    __table_args__ = (Index("ix_metric_observations_lookup", "pipeline_id", "metric", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(64))
    value: Mapped[float]
    observed_at: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The production version when it was received: observations of an older model stop
    # counting once a new version is promoted.
    model_version: Mapped[int | None]
