from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import AdminDep, ServicesDep, SessionDep, audited
from app.pipelines import service as pipelines
from app.webhooks import service
from app.webhooks.errors import PayloadTooLarge
from app.webhooks.schemas import DataAccepted, SecretRotate, SecretRotated, WebhookHeaders
from app.webhooks.service import Answer

router = APIRouter(tags=["webhooks"])

_RECORDS_SCHEMA = {
    "type": "object",
    "required": ["records"],
    "properties": {"records": {"type": "array", "items": {"type": "object"}}},
}
DATA_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _RECORDS_SCHEMA},
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
DATA_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "Missing, malformed, stale or wrong signature, or no such pipeline "
        "(the same answer, so names cannot be listed); nothing stored"
    },
    413: {"description": "Body larger than MLOPS_WEBHOOK_MAX_BYTES"},
    415: {"description": "Not JSON, CSV or Parquet"},
    422: {
        "description": "Bad rows, columns or values (each named), or a delivery key or "
        "webhook-id reused for a different body"
    },
}


async def raw_body(request: Request, services: ServicesDep) -> bytes:
    """The body as sent (signatures cover the exact bytes), refused past the size limit."""
    limit = services.settings.webhook_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    # Streamed, so a body without (or lying in) Content-Length is cut off at the limit too.
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The body is larger than the webhook limit of {limit} bytes")


@router.post(
    "/pipelines/{name}/data",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=DATA_BODY,
    responses=DATA_RESPONSES,
)
async def post_data(
    name: str,
    body: Annotated[bytes, Depends(raw_body)],
    headers: Annotated[WebhookHeaders, Header()],
    response: Response,
    session: SessionDep,
    services: ServicesDep,
) -> DataAccepted:
    """New-data webhook: signed JSON records, CSV or Parquet rows; may fire new_data runs."""
    # Not a sync route: FastAPI validates a sync route's answer on a pool thread *before*
    # the session dependency commits. Concurrent deliveries wait for the pipeline lock on
    # pool threads; had the lock holder needed one more thread, a burst of 40 would
    # deadlock. Here all database work is one pool call and the answer is built on the loop.
    answer = await run_in_threadpool(_accept, name, body, headers, session, services)
    response.status_code = answer.status_code
    if answer.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return answer.body


def _accept(
    name: str, body: bytes, headers: WebhookHeaders, session: SessionDep, services: ServicesDep
) -> Answer:
    return service.accept(
        session=session,
        name=name,
        body=body,
        headers=headers,
        settings=services.settings,
        dispatch=services.executor.submit,
    )


@router.post(
    "/pipelines/{name}/webhook-secret/rotate", dependencies=[audited("webhook_secret.rotate")]
)
def rotate_webhook_secret(
    name: str,
    actor: AdminDep,
    session: SessionDep,
    body: Annotated[SecretRotate | None, Body()] = None,
) -> SecretRotated:
    """A new webhook secret, shown only here; the old one keeps working for grace_s seconds."""
    pipeline = pipelines.get(session=session, name=name)
    grace_s = (body or SecretRotate()).grace_s
    until = service.rotate_secret(session=session, pipeline=pipeline, grace_s=grace_s)
    return SecretRotated(webhook_secret=pipeline.webhook_secret, previous_valid_until=until)
