"""The new-data webhook: verify, deduplicate, store, fire triggers; and secret rotation.

Functions flush, never commit: the request owns the transaction, so the delivery key, the
batch and any fired run commit together or not at all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.core.settings import Settings
from app.core.time import as_utc, utcnow
from app.pipelines.models import Pipeline
from app.pipelines.service import new_webhook_secret
from app.runs.service import Dispatch
from app.triggers import drift, new_data
from app.webhooks import batches, deliveries, signatures
from app.webhooks.schemas import DataAccepted, WebhookHeaders
from app.webhooks.signatures import SignatureHeaders

ACCEPTED = 202


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: DataAccepted
    replayed: bool = False


def accept(
    *,
    session: Session,
    pipeline: Pipeline,
    body: bytes,
    headers: WebhookHeaders,
    settings: Settings,
    dispatch: Dispatch,
) -> Answer:
    """Store a signed delivery's rows once per delivery key, and fire what they trigger."""
    now = utcnow()
    signed = SignatureHeaders(headers.x_mlops_signature, headers.x_hub_signature_256)
    signatures.verify(signed, body, valid_secrets(pipeline, now), now)
    # Deliveries to one pipeline take turns. Triggers lock this row anyway (FOR UPDATE), and
    # taking it before our inserts' foreign-key share locks avoids a lock-order deadlock;
    # it also means each delivery counts the rows of every one committed before it.
    session.refresh(pipeline, with_for_update=True)
    if (key := headers.delivery_key()) is None:
        return Answer(ACCEPTED, _ingest(session, pipeline, body, headers, dispatch))
    header, value = key
    digest = hashlib.sha256(body).hexdigest()
    claim = deliveries.claim(
        session=session,
        pipeline_id=pipeline.id,
        key=value,
        body_sha256=digest,
        window_s=settings.webhook_idempotency_s,
    )
    if claim.repeat:
        deliveries.same_body_or_refuse(claim.delivery, digest, header)
        stored = DataAccepted.model_validate(claim.delivery.response)
        return Answer(claim.delivery.status_code, stored, replayed=True)
    answer = _ingest(session, pipeline, body, headers, dispatch)
    claim.delivery.status_code = ACCEPTED
    claim.delivery.response = answer.model_dump(mode="json")
    session.flush()
    return Answer(ACCEPTED, answer)


def _ingest(
    session: Session,
    pipeline: Pipeline,
    body: bytes,
    headers: WebhookHeaders,
    dispatch: Dispatch,
) -> DataAccepted:
    batch = batches.store(
        session=session, pipeline=pipeline, body=body, content_type=headers.content_type
    )
    fired = new_data.check_after_ingest(session, pipeline, dispatch)
    fired += drift.check_after_ingest(session, pipeline, dispatch, actor="webhook")
    return DataAccepted(
        batch_id=batch.id, rows=batch.row_count, columns=list(batch.columns), fired=fired
    )


def valid_secrets(pipeline: Pipeline, now: datetime) -> list[str]:
    """The current secret, and the previous one while its grace period lasts."""
    previous, until = pipeline.previous_webhook_secret, pipeline.previous_secret_expires_at
    if previous is not None and until is not None and now < as_utc(until):
        return [pipeline.webhook_secret, previous]
    return [pipeline.webhook_secret]


def rotate_secret(*, session: Session, pipeline: Pipeline, grace_s: float) -> datetime:
    """A new webhook secret; the old one works for `grace_s` more seconds. Returns that end."""
    until = utcnow() + timedelta(seconds=grace_s)
    pipeline.previous_webhook_secret = pipeline.webhook_secret
    pipeline.previous_secret_expires_at = until
    pipeline.webhook_secret = new_webhook_secret()
    session.flush()
    return until
