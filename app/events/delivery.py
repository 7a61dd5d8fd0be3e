"""Delivering the outbox: a housekeeping job on the scheduler clock, on every replica.

Responsible for: claiming due deliveries (FOR UPDATE SKIP LOCKED on PostgreSQL, so replicas
share the work without sending one twice at a time), sending them off every request path
with a timeout, and recording each outcome: delivered; tried again later with exponential
backoff and jitter (5xx, 408, 429, timeouts, connection errors) until MLOPS_EVENT_RETRY_S
has passed; failed for good on another 4xx; and a 410 disables the subscription. All state
is in the database, so a restart loses nothing: at least once, never "at most once".
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session
from tenacity import RetryCallState, Retrying, wait_random_exponential

from app.core import outbound, signing
from app.core.db import SessionFactory, read_only_unit, unit_of_work
from app.core.retry import TRANSIENT_STATUS
from app.core.settings import Settings
from app.core.time import utcnow
from app.events import messages
from app.events.models import DELIVERED, FAILED, PENDING, Delivery, Event, Subscription

log = logging.getLogger(__name__)
BATCH = 50
# A claimed delivery is its claimer's for this long; if that process dies, another takes it.
CLAIM_S = 300
MAX_SENDERS = 8


@dataclass(frozen=True)
class Outgoing:
    delivery_id: int
    message_id: str
    url: str
    secret: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status_code: int | None
    error: str | None
    # False for a refusal that no retry changes (the URL no longer matches the pattern).
    may_retry: bool = True


def deliver_due(factory: SessionFactory, settings: Settings) -> None:
    """Send every due delivery once, and record how each went."""
    outgoing = _claim(factory, settings)
    if not outgoing:
        return
    with ThreadPoolExecutor(min(MAX_SENDERS, len(outgoing))) as pool:
        outcomes = list(pool.map(lambda item: _send(item, settings), outgoing))
    with unit_of_work(factory) as session:
        for outcome in outcomes:
            _record(session, outcome, settings)


def prune(factory: SessionFactory, settings: Settings) -> None:
    """Forget events older than MLOPS_EVENT_KEEP_S that have nothing left to send."""
    cutoff = utcnow() - timedelta(seconds=settings.event_keep_s)
    waiting = select(Delivery.id).where(Delivery.event_id == Event.id, Delivery.status == PENDING)
    with unit_of_work(factory) as session:
        # Their deliveries go with them (ON DELETE CASCADE).
        session.execute(delete(Event).where(Event.created_at < cutoff, ~waiting.exists()))


def _claim(factory: SessionFactory, settings: Settings) -> list[Outgoing]:
    now = utcnow()
    # Looked at first without a write lock: on SQLite a claim would take the database's one
    # write lock every poll, even with nothing to send.
    with read_only_unit(factory) as session:
        if session.scalar(select(Delivery.id).where(*_due(now)).limit(1)) is None:
            return []
    with unit_of_work(factory) as session:
        due = session.scalars(
            select(Delivery)
            .where(*_due(now))
            .order_by(Delivery.next_attempt_at)
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        ).all()
        outgoing = []
        for delivery in due:
            delivery.attempts += 1
            delivery.last_attempt_at = now
            delivery.next_attempt_at = now + timedelta(seconds=CLAIM_S)
            outgoing.append(_outgoing(session, delivery, settings))
        return outgoing


def _due(now: datetime) -> tuple[ColumnElement[bool], ...]:
    return Delivery.status == PENDING, Delivery.next_attempt_at <= now


def _outgoing(session: Session, delivery: Delivery, settings: Settings) -> Outgoing:
    event = session.get_one(Event, delivery.event_id)
    row = session.get_one(Subscription, delivery.subscription_id)
    body = messages.body(event, fmt=row.format, public_url=settings.public_url)
    return Outgoing(delivery.id, event.message_id, row.url, row.secret, body)


def _send(item: Outgoing, settings: Settings) -> Outcome:
    if not outbound.allowed(item.url, settings.http_url_allow):
        return Outcome(item.delivery_id, None, outbound.refusal(item.url), may_retry=False)
    timestamp = int(utcnow().timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": "mlops-events",
        "webhook-id": item.message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.sign(item.secret, item.message_id, timestamp, item.body),
    }
    try:
        response = httpx.post(
            item.url, content=item.body, headers=headers, timeout=settings.event_timeout_s
        )
    except httpx.TimeoutException:
        return Outcome(item.delivery_id, None, f"no answer within {settings.event_timeout_s:g} s")
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        return Outcome(item.delivery_id, None, f"could not connect: {exc or type(exc).__name__}")
    return Outcome(item.delivery_id, response.status_code, None)


def _record(session: Session, outcome: Outcome, settings: Settings) -> None:
    delivery = session.get(Delivery, outcome.delivery_id)
    if delivery is None or delivery.status != PENDING:
        return  # its subscription was deleted meanwhile
    now = utcnow()
    code = outcome.status_code
    delivery.last_status_code, delivery.last_error = code, outcome.error
    if code is not None and 200 <= code < 300:
        delivery.status, delivery.delivered_at, delivery.next_attempt_at = DELIVERED, now, None
    elif code == 410:
        _disable(session, delivery.subscription_id, now.isoformat())
    elif _transient(outcome) and now - delivery.created_at < _retry_for(settings):
        delivery.next_attempt_at = now + timedelta(seconds=_wait(delivery.attempts, settings))
    else:
        delivery.status, delivery.next_attempt_at = FAILED, None
    session.flush()


def _transient(outcome: Outcome) -> bool:
    code = outcome.status_code
    if code is None:
        return outcome.may_retry  # timeouts and connection errors
    return code >= 500 or code in TRANSIENT_STATUS


def _disable(session: Session, subscription_id: int, when: str) -> None:
    # 410 Gone: the receiver asks us to stop, so every delivery still waiting stops too.
    row = session.get_one(Subscription, subscription_id)
    row.enabled = False
    row.disabled_reason = f"410 Gone from {row.url} at {when}; re-create it to resume"
    session.execute(
        update(Delivery)
        .where(Delivery.subscription_id == subscription_id, Delivery.status == PENDING)
        .values(status=FAILED, next_attempt_at=None)
    )
    log.warning("subscription %s disabled: %s", subscription_id, row.disabled_reason)


def _retry_for(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.event_retry_s)


def _wait(attempts: int, settings: Settings) -> float:
    """Seconds until the next attempt: exponential with full jitter (tenacity's strategy)."""
    strategy = wait_random_exponential(
        multiplier=settings.event_backoff_s, max=settings.event_max_backoff_s
    )
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempts
    return max(float(strategy(state)), settings.event_backoff_s)
