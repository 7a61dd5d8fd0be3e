from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base
from app.core.time import utcnow


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        # One row per fire (manual Idempotency-Key, or trigger + scheduled time).
        UniqueConstraint("pipeline_id", "fire_key"),
        # 'active' and 'waiting' slots: the database enforces the concurrency policy.
        UniqueConstraint("pipeline_id", "slot"),
        # The runs not yet counted in run_rollups: what a /metrics scrape still aggregates (by
        # pipeline first) and what the roll-up job looks through.
        Index(
            "ix_runs_uncounted",
            "pipeline_id",
            "status",
            "trigger_kind",
            sqlite_where=text("rolled_up = 0"),
            postgresql_where=text("rolled_up = false"),
        ),
        # The same runs in id order: the roll-up job takes them oldest first, in batches.
        Index(
            "ix_runs_uncounted_id",
            "id",
            sqlite_where=text("rolled_up = 0"),
            postgresql_where=text("rolled_up = false"),
        ),
        # Ids are never reused, also on SQLite (AUTOINCREMENT): GET /runs/{id} names one run.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(32), index=True)
    trigger_kind: Mapped[str] = mapped_column(String(32))
    trigger_reason: Mapped[str] = mapped_column(String(500))
    fire_key: Mapped[str | None] = mapped_column(String(255))
    slot: Mapped[str | None] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(default=1)
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    actor: Mapped[str] = mapped_column(String(128), default="system")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    not_before: Mapped[datetime | None]
    # Which of the spec's triggers fired it (app.spec.identity.trigger_id), and for time
    # triggers the tick it fired for; None for manual runs.
    trigger_id: Mapped[str | None] = mapped_column(String(16))
    scheduled_for: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(255))
    # Who executed it, for people: `mlops worker --name`, or `<hostname>:<pid>` of serve.
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[datetime | None]
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_version: Mapped[int | None]
    # Counted in run_rollups (terminal runs only, which never change again).
    rolled_up: Mapped[bool] = mapped_column(default=False, server_default=false())

    steps: Mapped[list[RunStep]] = relationship(
        order_by="RunStep.position", cascade="all, delete-orphan", lazy="selectin"
    )


class RunStep(Base):
    __tablename__ = "run_steps"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32), default="pending")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    detail: Mapped[str | None] = mapped_column(Text)


# Upper bounds (seconds) of the run duration histogram; one column each in run_rollups.
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)


class RunRollup(Base):
    """Counts and durations of a pipeline's terminal runs by status and trigger kind, so a
    /metrics scrape reads a row per series instead of every run ever made."""

    __tablename__ = "run_rollups"
    __table_args__ = (UniqueConstraint("pipeline_id", "status", "trigger_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("pipelines.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(32))
    trigger_kind: Mapped[str] = mapped_column(String(32))
    runs: Mapped[int]
    # Runs with both a start and an end: the histogram's count, sum and cumulative buckets.
    timed: Mapped[int]
    duration_sum: Mapped[float] = mapped_column(Float)
    le_1: Mapped[int]
    le_5: Mapped[int]
    le_15: Mapped[int]
    le_60: Mapped[int]
    le_300: Mapped[int]
    le_900: Mapped[int]
    le_3600: Mapped[int]
    le_14400: Mapped[int]
