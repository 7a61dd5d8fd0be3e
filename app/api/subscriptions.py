"""Outgoing event subscriptions (admin): create, list, get, delete, rotate, deliveries."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from sqlalchemy.orm import Session

from app.api.deps import AdminDep, Limit, Offset, ReadSessionDep, ServicesDep, SessionDep
from app.auth import audit
from app.auth.roles import Actor
from app.core.db import MAX_ID
from app.events import service
from app.events.schemas import (
    DeliveryRead,
    SecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
)
from app.pipelines.schemas import Page

router = APIRouter(tags=["subscriptions"])
SubscriptionId = Annotated[int, Path(ge=1, le=MAX_ID)]


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED)
def create_subscription(
    body: SubscriptionCreate, actor: AdminDep, session: SessionDep, services: ServicesDep
) -> SubscriptionCreated:
    """Subscribe a URL to events; the signing secret is shown only in this response."""
    row = service.create(
        session=session, body=body, url_allow=services.settings.http_url_allow, by=actor.label
    )
    _audit(session, actor, "subscription.create", row.id, {"url": row.url, "events": row.events})
    return SubscriptionCreated(
        **SubscriptionRead.model_validate(row).model_dump(), secret=row.secret
    )


@router.get("/subscriptions")
def list_subscriptions(
    actor: AdminDep, session: ReadSessionDep, limit: Limit = 100, offset: Offset = 0
) -> Page[SubscriptionRead]:
    """Subscriptions, newest first (never their secrets)."""
    rows, total = service.list_page(session=session, limit=limit, offset=offset)
    items = [SubscriptionRead.model_validate(row) for row in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/subscriptions/{subscription_id}")
def get_subscription(
    subscription_id: SubscriptionId, actor: AdminDep, session: ReadSessionDep
) -> SubscriptionRead:
    """One subscription: its URL, filters, and whether it is still enabled."""
    row = service.get(session=session, subscription_id=subscription_id)
    return SubscriptionRead.model_validate(row)


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subscription(
    subscription_id: SubscriptionId, actor: AdminDep, session: SessionDep
) -> None:
    """Delete a subscription and its delivery log; nothing more is sent to it."""
    row = service.get(session=session, subscription_id=subscription_id)
    _audit(session, actor, "subscription.delete", row.id, {"url": row.url})
    service.delete(session=session, row=row)


@router.post("/subscriptions/{subscription_id}/rotate-secret")
def rotate_subscription_secret(
    subscription_id: SubscriptionId, actor: AdminDep, session: SessionDep
) -> SecretRotated:
    """A new signing secret, shown only here; every delivery from now on is signed with it."""
    row = service.get(session=session, subscription_id=subscription_id)
    secret = service.rotate_secret(session=session, row=row)
    _audit(session, actor, "subscription.rotate_secret", row.id, {"url": row.url})
    return SecretRotated(secret=secret)


@router.get("/subscriptions/{subscription_id}/deliveries")
def list_deliveries(
    subscription_id: SubscriptionId,
    actor: AdminDep,
    session: ReadSessionDep,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[DeliveryRead]:
    """The delivery log, newest first: attempts, last status code or error, next attempt."""
    row = service.get(session=session, subscription_id=subscription_id)
    items, total = service.deliveries(session=session, row=row, limit=limit, offset=offset)
    return Page(items=items, total=total, limit=limit, offset=offset)


def _audit(
    session: Session, actor: Actor, action: str, row_id: int, detail: dict[str, Any]
) -> None:
    target = f"subscriptions/{row_id}"
    audit.record(session=session, actor=actor, action=action, target=target, detail=detail)
