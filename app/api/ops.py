from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import ServicesDep, ViewerDep
from app.core.db import READ_ONLY
from app.core.errors import DomainError
from app.ops.metrics import run_series

router = APIRouter(tags=["operations"])


class NotReady(DomainError):
    status_code = 503
    title = "Not ready"


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    # async: it does no I/O, so it takes no threadpool hop.
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Database or scheduler not ready"}})
def readyz(services: ServicesDep) -> dict[str, str]:
    """The database answers and the scheduler is running."""
    try:
        readonly = services.engine.execution_options(**{READ_ONLY: True})
        with readonly.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise NotReady(f"Database unreachable: {type(exc).__name__}: {exc}") from exc
    if not services.clock.running:
        raise NotReady("Scheduler is not running")
    return {"status": "ready", "database": services.engine.dialect.name, "scheduler": "running"}


@router.get("/metrics", response_class=Response)
def metrics(viewer: ViewerDep, services: ServicesDep) -> Response:
    """Prometheus text exposition (viewer key: Prometheus sends it as a bearer token)."""
    body = generate_latest(services.metrics) + run_series(services.factory)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
