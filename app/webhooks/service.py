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
from app.pipelines import service as pipelines
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
    name: str,
    body: bytes,
    headers: WebhookHeaders,
    settings: Settings,
    dispatch: Dispatch,
) -> Answer:
    """Store a signed delivery's rows once (per replay and delivery key), fire its triggers."""
    now = utcnow()
    pipeline = pipelines.find(session=session, name=name)
    signed = SignatureHeaders(
        headers.x_mlops_signature,
        headers.x_hub_signature_256,
        headers.webhook_id,
        headers.webhook_timestamp,
        headers.webhook_signature,
    )
    # An unknown name is checked against a secret nobody holds, so a caller without the
    # secret gets the same 401 for every name and cannot list the pipelines.
    verified = signatures.verify(signed, body, _secrets_or_decoy(pipeline, now), now)
    if pipeline is None:
        raise signatures.mismatch(verified.header)
    # Deliveries to one pipeline take turns. Triggers lock this row anyway (FOR UPDATE), and
    # taking it before our inserts' foreign-key share locks avoids a lock-order deadlock;
    # it also means each delivery counts the rows of every one committed before it.
    session.refresh(pipeline, with_for_update=True)
    digest = hashlib.sha256(body).hexdigest()
    keys = [(verified.header, verified.replay_key)]
    if (key := headers.delivery_key()) is not None:
        keys.append(key)
    claim = deliveries.claim(
        session=session,
        pipeline_id=pipeline.id,
        keys=keys,
        body_sha256=digest,
        # A replay key must outlive the signature's tolerance, whatever the window.
        window_s=max(settings.webhook_idempotency_s, signatures.TOLERANCE_S),
    )
    if claim.earlier is not None:
        deliveries.same_body_or_refuse(claim.earlier, digest, claim.header)
        stored = DataAccepted.model_validate(claim.earlier.response)
        return Answer(claim.earlier.status_code, stored, replayed=True)
    answer = _ingest(session, pipeline, body, headers, dispatch)
    for delivery in claim.claimed:
        delivery.status_code = ACCEPTED
        delivery.response = answer.model_dump(mode="json")
    session.flush()
    return Answer(ACCEPTED, answer)


def _secrets_or_decoy(pipeline: Pipeline | None, now: datetime) -> list[str]:
    return [_DECOY_SECRET] if pipeline is None else valid_secrets(pipeline, now)


_DECOY_SECRET = new_webhook_secret()


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
