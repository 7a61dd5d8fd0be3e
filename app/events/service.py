"""Subscriptions, and the outbox: `emit` adds an event and its deliveries to the caller's
transaction, so they commit with the state change they report or not at all.

Functions flush, never commit.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core import outbound, signing
from app.core.errors import InvalidInput, NotFound, field_error
from app.core.time import utcnow
from app.events.models import PENDING, Delivery, Event, Subscription
from app.events.schemas import DeliveryRead, SubscriptionCreate


def create(
    *, session: Session, body: SubscriptionCreate, url_allow: str | None, by: str
) -> Subscription:
    """A new subscription with a fresh secret; 422 on a URL that MLOPS_HTTP_URL_ALLOW refuses."""
    if not outbound.allowed(body.url, url_allow):
        msg = outbound.refusal(body.url)
        raise InvalidInput(f"body.url: {msg}", errors=[field_error("body.url", msg)])
    row = Subscription(
        url=body.url,
        events=sorted(set(body.events)),
        pipelines=None if body.pipelines is None else sorted(set(body.pipelines)),
        format=body.format,
        secret=signing.new_secret(),
        created_by=by,
    )
    session.add(row)
    session.flush()
    return row


def get(*, session: Session, subscription_id: int) -> Subscription:
    """The subscription, or NotFound."""
    row = session.get(Subscription, subscription_id)
    if row is None:
        raise NotFound(f"Subscription {subscription_id} does not exist")
    return row


def list_page(*, session: Session, limit: int, offset: int) -> tuple[list[Subscription], int]:
    """Subscriptions, newest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(Subscription)) or 0
    rows = session.scalars(
        select(Subscription).order_by(Subscription.id.desc()).limit(limit).offset(offset)
    )
    return list(rows), total


def delete(*, session: Session, row: Subscription) -> None:
    """Remove the subscription and its deliveries (pending ones are never sent)."""
    session.delete(row)
    session.flush()


def rotate_secret(*, session: Session, row: Subscription) -> str:
    """A new secret for the subscription; deliveries from now on are signed with it."""
    row.secret = signing.new_secret()
    session.flush()
    return row.secret


def deliveries(
    *, session: Session, row: Subscription, limit: int, offset: int
) -> tuple[list[DeliveryRead], int]:
    """The subscription's deliveries, newest first, with their events."""
    where = Delivery.subscription_id == row.id
    total = session.scalar(select(func.count()).select_from(Delivery).where(where)) or 0
    pairs = session.execute(
        select(Delivery, Event)
        .join(Event, Event.id == Delivery.event_id)
        .where(where)
        .order_by(Delivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [_read(delivery, event) for delivery, event in pairs], total


def emit(session: Session, event_type: str, *, pipeline: str, data: dict[str, Any]) -> None:
    """Add an event and one delivery per interested subscription to this transaction."""
    wanted = [
        row
        for row in session.scalars(select(Subscription).where(Subscription.enabled))
        if row.wants(event_type, pipeline)
    ]
    if not wanted:
        return  # nobody listens: nothing to keep
    now = utcnow()
    event = Event(
        message_id=f"msg_{uuid.uuid4().hex}",
        type=event_type,
        pipeline=pipeline,
        data={"pipeline": pipeline, **data},
        created_at=now,
    )
    session.add(event)
    session.flush()
    session.add_all(
        Delivery(event_id=event.id, subscription_id=row.id, status=PENDING, next_attempt_at=now)
        for row in wanted
    )
    session.flush()


def _read(delivery: Delivery, event: Event) -> DeliveryRead:
    return DeliveryRead(
        id=delivery.id,
        event_id=event.id,
        message_id=event.message_id,
        type=event.type,
        pipeline=event.pipeline,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        last_attempt_at=delivery.last_attempt_at,
        next_attempt_at=delivery.next_attempt_at if delivery.status == PENDING else None,
        delivered_at=delivery.delivered_at,
        created_at=delivery.created_at,
    )
