from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.time import utcnow


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("pipeline_id", "version"),
        # At most one production version per pipeline, enforced by the database.
        Index(
            "uq_model_versions_one_production",
            "pipeline_id",
            unique=True,
            sqlite_where=text("stage = 'production'"),
            postgresql_where=text("stage = 'production'"),
        ),
        # Ids are never reused, also on SQLite (AUTOINCREMENT).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    stage: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    artifact_uri: Mapped[str] = mapped_column(String(1024))
    estimator: Mapped[str] = mapped_column(String(255))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    data_fingerprint: Mapped[dict[str, Any]] = mapped_column(default=dict)
    features: Mapped[list[Any]] = mapped_column(default=list)
    # Per-feature distribution of the training data, the reference for drift checks. Tens of
    # kB of JSON: loaded only when a drift check reads it, not with every version row
    # (a promotion locks and reads all of a pipeline's versions).
    reference: Mapped[dict[str, Any]] = mapped_column(default=dict, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    promoted_at: Mapped[datetime | None]
    # Set when an admin purged the artifacts of an archived pipeline: the row stays.
    artifact_purged_at: Mapped[datetime | None]


class Promotion(Base):
    """The append-only ledger: every promotion and rollback, who, when, from, to, why."""

    __tablename__ = "promotions"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused

    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("pipelines.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[int | None]
    to_version: Mapped[int]
    actor: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # True when the version had been rejected by a gate and a person promoted it with force;
    # gate_reason is what the gate said.
    forced: Mapped[bool] = mapped_column(default=False, server_default=false())
    gate_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArtifactChunk(Base):
    """A piece of an artifact kept in the database (MLOPS_ARTIFACT_STORE=db), in order."""

    __tablename__ = "artifact_chunks"

    uri: Mapped[str] = mapped_column(String(1024), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
