from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.time import utcnow


class Pipeline(Base):
    __tablename__ = "pipelines"
    __table_args__ = (
        # A name is unique among the live pipelines only: re-creating an archived pipeline's
        # name starts a new history beside the archived one.
        Index(
            "uq_pipelines_live_name",
            "name",
            unique=True,
            sqlite_where=text("archived_at IS NULL"),
            postgresql_where=text("archived_at IS NULL"),
        ),
        # Ids are never reused, also on SQLite (AUTOINCREMENT).
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    paused: Mapped[bool] = mapped_column(default=False)
    # HMAC needs the secret itself, so it is kept (never returned after creation).
    webhook_secret: Mapped[str] = mapped_column(String(128))
    # After a rotation the old secret keeps working until this time (a grace period).
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[datetime | None]
    # Time triggers count ticks from here: creation, a schedule change, or resume.
    schedule_anchor_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped on every change, so schedulers in other processes can notice cheaply.
    generation: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Deleting a pipeline archives it: its history stays readable, it never runs again.
    archived_at: Mapped[datetime | None]
