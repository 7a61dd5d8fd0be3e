from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import text

from app.api.deps import ServicesDep, ViewerDep
from app.core.db import READ_ONLY
from app.core.errors import DomainError
from app.core.redact import redact_url
from app.ops.metrics import DatabaseCollector

router = APIRouter(tags=["operations"])


class NotReady(DomainError):
    status_code = 503
    title = "Not ready"


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
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
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(services.factory, services.executor, services.broker))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
