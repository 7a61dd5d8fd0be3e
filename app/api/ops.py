from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import ServicesDep, ViewerDep
from app.core.db import READ_ONLY
from app.core.errors import DomainError
from app.core.redact import redact_url
from app.ops.metrics import run_series

router = APIRouter(tags=["operations"])


class NotReady(DomainError):
    status_code = 503
    title = "Not ready"


@router.get("/", include_in_schema=False)
def root(request: Request) -> RedirectResponse:
    """The dashboard is the front page."""
    root_path = str(request.scope.get("root_path", "")).rstrip("/")
    return RedirectResponse(f"{root_path}/ui", status_code=307)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    # async: it does no I/O, so it takes no threadpool hop.
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "Database, scheduler, broker or training process not ready"}},
)
def readyz(services: ServicesDep) -> dict[str, str]:
    """The database answers, the scheduler runs, and, where they apply, the broker is
    reachable and the training process is ready."""
    try:
        readonly = services.engine.execution_options(**{READ_ONLY: True})
        with readonly.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        raise NotReady(f"Database unreachable: {type(exc).__name__}: {exc}") from exc
    if not services.clock.running:
        raise NotReady("Scheduler is not running")
    if not services.training_ready.is_set():
        raise NotReady("The training process is still starting (MLOPS_WARM_START)")
    ready = {"status": "ready", "database": services.engine.dialect.name, "scheduler": "running"}
    if services.broker is not None:
        if not services.broker.reachable():
            url = redact_url(services.settings.broker_url)
            raise NotReady(f"Broker unreachable: {url} (MLOPS_BROKER_URL)")
        ready["broker"] = "reachable"
    return ready


@router.get("/metrics", response_class=Response)
def metrics(viewer: ViewerDep, services: ServicesDep) -> Response:
    """Prometheus text exposition (viewer key: Prometheus sends it as a bearer token)."""
    body = generate_latest(services.metrics) + run_series(services.factory)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
