"""The FastAPI application: wiring, lifespan (clock, recovery, housekeeping) and routes."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp

from app import __version__
from app.api.deps import Services
from app.api.keys import router as auth_router
from app.api.monitoring import router as monitoring_router
from app.api.ops import router as ops_router
from app.api.pipelines import router as pipelines_router
from app.api.read_lane import ReadLane
from app.api.registry import router as registry_router
from app.api.retention import router as retention_router
from app.api.runs import router as runs_router
from app.api.subscriptions import router as subscriptions_router
from app.api.webhooks import router as webhooks_router
from app.auth import usage
from app.auth.bootstrap import bootstrap
from app.auth.middleware import AuthenticateFirst
from app.core.db import SessionFactory, make_engine, make_session_factory
from app.core.limits import BodyLimitMiddleware, Limit, limit_by_path
from app.core.problems import install_problem_handlers
from app.core.readers import Readers
from app.core.redact import redact_url_logs
from app.core.request_id import RequestIdMiddleware
from app.core.settings import Settings, get_settings
from app.events import delivery
from app.execution import recovery
from app.execution.env import Executor, WorkerEnv
from app.executors.celery import BrokerProbe, CeleryExecutor, make_celery
from app.executors.thread import ThreadExecutor
from app.ops.docs import install_docs
from app.ops.http import RecordRequests, RouteTemplates
from app.ops.metrics import build_registry
from app.registry.serving import ModelCache
from app.registry.stores import open_store
from app.runs import rollup
from app.scheduler.clock import EVENTS_POOL, Clock
from app.scheduler.housekeeping import schedule_recovery
from app.scheduler.service import TimeScheduler
from app.ui.install import install_ui

log = logging.getLogger(__name__)
API = "/api/v1"
# The signed new-data webhook: its HMAC signature is its credential, not an API key.
WEBHOOK_PATH = f"{API}/pipelines/[^/]+/data"
THREADPOOL_SIZE = 200


def build_services(settings: Settings) -> Services:
    """Everything the app needs, built from settings; nothing started yet."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    clock = Clock(workers=settings.workers)
    executor, broker = _executor(settings, clock, factory)
    artifacts = open_store(settings, engine)
    models = ModelCache(artifacts)
    env = WorkerEnv(
        factory, settings, artifacts, executor, recovery.owner_id(), models, recovery.process_name()
    )
    if isinstance(executor, ThreadExecutor):
        executor.bind(lambda run_id: _execute(run_id, env))
    scheduler = TimeScheduler(clock, factory, executor.submit, settings.reconcile_s)
    key_usage = usage.KeyUsage(factory)
    metrics, requests = build_registry(factory, executor, broker)
    return Services(
        settings,
        engine,
        factory,
        clock,
        executor,
        artifacts,
        models,
        env,
        scheduler,
        key_usage,
        metrics,
        requests,
        broker,
        Readers(engine),
        _set(threading.Event()),
    )


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def _executor(
    settings: Settings, clock: Clock, factory: SessionFactory
) -> tuple[Executor, BrokerProbe | None]:
    """Threads of this process, or the broker (this process then never trains)."""
    if settings.executor == "celery":
        app = make_celery(settings)
        return CeleryExecutor(app, factory), BrokerProbe(app)
    return ThreadExecutor(clock), None


def _execute(run_id: int, env: WorkerEnv) -> None:
    # Imported with the first run: the training stack (scikit-learn, SciPy) costs seconds of
    # start-up and ~100 MB that a scheduler which is only waiting does not need.
    from app.execution import worker

    worker.execute(run_id, env)


def start(services: Services) -> None:
    """Make the first admin key if needed, start the clock, recover what a previous process
    left, schedule housekeeping."""
    bootstrap(services.settings, services.factory)
    services.clock.start()
    recovery.recover_at_start(services.env)
    services.scheduler.start()
    schedule_recovery(services.clock, services.env)
    settings = services.settings
    services.clock.every(usage.FLUSH_S, "key-last-used", services.key_usage.flush)
    services.clock.every(
        settings.event_poll_s,
        "deliver-events",
        lambda: delivery.deliver_due(services.factory, settings),
        pool=EVENTS_POOL,
    )
    services.clock.every(3600, "prune-events", lambda: delivery.prune(services.factory, settings))
    services.clock.every(rollup.INTERVAL_S, "roll-up-runs", lambda: _roll_up(services))


def _roll_up(services: Services) -> None:
    rollup.roll_up(services.factory)


def stop(services: Services) -> None:
    """Stop taking triggers, give running runs the grace period, then end what is left."""
    services.clock.pause()
    services.scheduler.stop()
    deadline = time.monotonic() + services.settings.shutdown_grace_s
    while services.executor.executing() and time.monotonic() < deadline:
        time.sleep(0.05)
    recovery.interrupt_owned(services.env)
    services.clock.shutdown(wait=False)
    _flush_key_usage(services)
    services.readers.close()
    services.engine.dispose()


def _flush_key_usage(services: Services) -> None:
    try:
        services.key_usage.flush()
    except Exception:
        # Losing a few `last_used_at` updates must not stop a shutdown.
        log.exception("could not record when API keys were last used")


def _limit_bodies(app: FastAPI, settings: Settings) -> None:
    """MLOPS_MAX_BODY_BYTES for every body; the new-data webhook has its own, larger limit."""
    limit_for = limit_by_path(
        lambda: Limit(settings.max_body_bytes, "MLOPS_MAX_BODY_BYTES"),
        {WEBHOOK_PATH: lambda: Limit(settings.webhook_max_bytes, "MLOPS_WEBHOOK_MAX_BYTES")},
    )
    app.add_middleware(BodyLimitMiddleware, limit_for=limit_for)


def _templates(app: FastAPI) -> list[str]:
    """Every route's full path template: the API's from its schema, and the app's own."""
    own = [
        path for route in app.router.routes if isinstance(path := getattr(route, "path", None), str)
    ]
    return [*app.openapi()["paths"], *own]


class MlopsApp(FastAPI):
    """FastAPI with the request id outside even the server-error handler, so a 500 carries
    X-Request-ID too (add_middleware can only add inside that handler), and the read lane
    outside that: it answers its reads before any other middleware, with its own request id
    and request metrics, and passes everything else on."""

    def build_middleware_stack(self) -> ASGIApp:
        return ReadLane(RequestIdMiddleware(super().build_middleware_stack()), api=API)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app; the database must already be migrated (`mlops db upgrade`)."""
    services = build_services(settings or get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A request's transaction spans several threadpool hops; with anyio's default 40
        # threads, a burst of requests waiting on a database lock could take every thread
        # and leave the lock's holder none to commit with. More threads make that burst
        # far larger than any the connection pool lets through at once.
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADPOOL_SIZE
        start(services)
        try:
            yield
        finally:
            await asyncio.to_thread(stop, services)

    app = MlopsApp(
        title="mlops",
        version=__version__,
        description="A retraining control plane: pipelines, runs, model registry, promotion.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    install_problem_handlers(app)
    _limit_bodies(app, services.settings)
    # Added after the body limit, so it runs before it: no body is read for a caller without
    # a key.
    app.add_middleware(AuthenticateFirst, protected=f"{API}/", open_paths=WEBHOOK_PATH)
    # Outermost: times every request, those refused by the middlewares above included.
    app.add_middleware(
        RecordRequests, metrics=services.requests, routes=RouteTemplates(lambda: _templates(app))
    )
    redact_url_logs()
    install_docs(app)
    install_ui(app, services.settings)
    app.include_router(ops_router)
    app.include_router(pipelines_router, prefix=API)
    app.include_router(runs_router, prefix=API)
    app.include_router(registry_router, prefix=API)
    app.include_router(monitoring_router, prefix=API)
    app.include_router(webhooks_router, prefix=API)
    app.include_router(auth_router, prefix=API)
    app.include_router(subscriptions_router, prefix=API)
    app.include_router(retention_router, prefix=API)
    return app
