from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base
from app.core.time import utcnow

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


class Subscription(Base):
    """Where events go: a URL, the event types and pipelines it wants, and its secret."""

    __tablename__ = "event_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[Any]]
    # None: every pipeline.
    pipelines: Mapped[list[Any] | None]
    format: Mapped[str] = mapped_column(String(16), default="standard")
    secret: Mapped[str] = mapped_column(String(128))
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="system")

    def wants(self, event_type: str, pipeline: str) -> bool:
        """True if this subscription takes `event_type` events of `pipeline`."""
        types_ok = "*" in self.events or event_type in self.events
        return types_ok and (self.pipelines is None or pipeline in self.pipelines)


class Event(Base):
    """One event in the outbox, written in the transaction of the change it reports."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The webhook-id: one per event, the same on every attempt and for every subscriber.
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    pipeline: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """One event for one subscription: its attempts so far and when the next is due."""

    __tablename__ = "event_deliveries"
    # The delivery job's claim: pending rows by due time.
    __table_args__ = (Index("ix_event_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("event_subscriptions.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
