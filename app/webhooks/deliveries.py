"""Delivery keys: a repeated delivery gets the first answer instead of storing its rows twice.

The key is claimed (a row under the unique (pipeline_id, key) constraint) before the batch is
stored, in the same transaction: two deliveries with one key cannot both commit a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.errors import InvalidInput, field_error
from app.core.time import utcnow
from app.webhooks.models import WebhookDelivery


@dataclass(frozen=True)
class Claim:
    # The new claims to fill in with the answer; empty when `earlier` answers instead.
    claimed: list[WebhookDelivery]
    # The delivery this request repeats (within the window), and the header that says so.
    earlier: WebhookDelivery | None = None
    header: str = ""


def claim(
    *,
    session: Session,
    pipeline_id: int,
    keys: Sequence[tuple[str, str]],
    body_sha256: str,
    window_s: float,
) -> Claim:
    """The earlier delivery one of `keys` (header, key) names, or new claims on all of them."""
    _forget_stale(session, pipeline_id, window_s)
    for header, key in keys:
        if (earlier := _find(session, pipeline_id, key)) is not None:
            return Claim([], earlier, header)
    claimed: list[WebhookDelivery] = []
    for header, key in keys:
        delivery = WebhookDelivery(
            pipeline_id=pipeline_id, key=key, body_sha256=body_sha256, status_code=0, response={}
        )
        try:
            with session.begin_nested():
                session.add(delivery)
        except IntegrityError:
            # A concurrent delivery with this key committed first (PostgreSQL made us wait
            # for it on the unique index): its answer stands, and our other claims go.
            earlier = _find(session, pipeline_id, key)
            if earlier is None:
                raise
            for mine in claimed:
                session.delete(mine)
            session.flush()
            return Claim([], earlier, header)
        claimed.append(delivery)
    return Claim(claimed)


def same_body_or_refuse(delivery: WebhookDelivery, body_sha256: str, header: str) -> None:
    """A key names one delivery: reusing it for a different body is a client bug."""
    if delivery.body_sha256 != body_sha256:
        msg = (
            "was already used for a different body; use a new key for new data "
            "(Idempotency-Key semantics)"
        )
        raise InvalidInput(f"{header}: {msg}", errors=[field_error(f"header.{header}", msg)])


def _find(session: Session, pipeline_id: int, key: str) -> WebhookDelivery | None:
    return session.scalars(
        select(WebhookDelivery).where(
            WebhookDelivery.pipeline_id == pipeline_id, WebhookDelivery.key == key
        )
    ).one_or_none()


def _forget_stale(session: Session, pipeline_id: int, window_s: float) -> None:
    # Past the window a key is new again; dropping all of the pipeline's old rows here also
    # keeps the table from growing without bound.
    cutoff = utcnow() - timedelta(seconds=window_s)
    session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.pipeline_id == pipeline_id, WebhookDelivery.created_at < cutoff
        )
    )
