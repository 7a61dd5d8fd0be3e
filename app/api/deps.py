"""The service container and the Annotated dependency aliases routes use."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client.registry import CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.auth import audit
from app.auth import service as auth
from app.auth.middleware import STATE_KEY
from app.auth.roles import Actor, Role
from app.auth.usage import KeyUsage
from app.core.db import MAX_OFFSET, SessionFactory, read_only_unit, unit_of_work
from app.core.errors import Forbidden
from app.core.readers import Readers
from app.core.settings import Settings
from app.execution.env import Executor, WorkerEnv
from app.executors.celery import BrokerProbe
from app.ops.http import RequestMetrics
from app.registry.artifacts import ArtifactStore
from app.registry.serving import ModelCache
from app.scheduler.clock import Clock
from app.scheduler.service import TimeScheduler

# Paging of the list endpoints: a page of at most 500, from an offset the database can take.
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    factory: SessionFactory
    clock: Clock
    executor: Executor
    artifacts: ArtifactStore
    models: ModelCache
    env: WorkerEnv
    scheduler: TimeScheduler
    key_usage: KeyUsage
    # What /metrics exposes, and the HTTP series the request middleware records into it.
    metrics: CollectorRegistry
    requests: RequestMetrics
    # The broker, with the celery executor; None with threads.
    broker: BrokerProbe | None
    # Where the read lane's reads run (core.readers).
    readers: Readers
    # Cleared while `mlops serve` prepares its training process (/readyz says so).
    training_ready: threading.Event


async def get_services(request: Request) -> Services:
    # async: no I/O, so no threadpool hop for a dependency nearly every route has.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def get_session(services: ServicesDep) -> AsyncIterator[Session]:
    """The request's transaction: committed when the route returns, rolled back on error."""
    # Not queued: a request's transaction spans several threadpool hops, and threads parked
    # on the queue could starve the hop that would end the transaction holding it.
    unit = unit_of_work(services.factory, queue=False)
    # Entered on the event loop: a new session does no I/O (it takes a connection at its
    # first query), so only the commit or rollback costs a threadpool hop.
    session = unit.__enter__()
    try:
        yield session
    except BaseException as exc:
        await _end_in_thread(unit, exc)
        raise
    await _end_in_thread(unit, None)


async def _end_in_thread(unit: AbstractContextManager[Session], exc: BaseException | None) -> None:
    """Commit (or roll back, after `exc`) on a pool thread, as FastAPI ends sync dependencies:
    shielded, so a client that goes away never leaves the transaction open, and with its own
    limiter, so ending a transaction never waits for a free thread."""
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(
            unit.__exit__,
            None if exc is None else type(exc),
            exc,
            None if exc is None else exc.__traceback__,
            limiter=anyio.CapacityLimiter(1),
        )


# scope="function": the commit happens before the response is sent, so a client that reads
# right after a 201/202 sees what it was told about.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_read_session(services: ServicesDep) -> Iterator[Session]:
    """A read-only transaction for routes that change nothing."""
    with read_only_unit(services.factory) as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]
T = TypeVar("T")


async def read_in_thread(services: Services, work: Callable[[Session], T]) -> T:
    """`work` in a read-only transaction on one pool thread: a single threadpool hop for the
    whole read, where a read session dependency and a sync route take three."""

    def unit() -> T:
        with read_only_unit(services.factory) as session:
            return work(session)

    return await anyio.to_thread.run_sync(unit)


# auto_error=False: a missing key is our own 401 problem+json, not FastAPI's 403.
_bearer = HTTPBearer(
    auto_error=False, description="An API key, sent as `Authorization: Bearer mlops_…`"
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_actor(request: Request, services: ServicesDep, credentials: Credentials) -> Actor:
    """Who is asking: the actor of the request's API key; 401 without a live one."""
    found: Actor | None = getattr(request.state, STATE_KEY, None)
    if found is not None:
        return found  # authenticated by the middleware, before the body was read
    return await auth.authenticate(
        engine=services.engine,
        settings=services.settings,
        token=credentials.credentials if credentials else None,
        usage=services.key_usage,
    )


def require(role: Role) -> Callable[[Actor], Awaitable[Actor]]:
    """A dependency that lets through actors whose role is `role` or above; 403 otherwise."""

    async def dependency(actor: Annotated[Actor, Depends(get_actor)]) -> Actor:
        if not actor.role.allows(role):
            raise Forbidden(
                f"This needs the {role} role; {actor.label} has {actor.role}",
                extra={"required_role": role.value, "role": actor.role.value},
            )
        return actor

    dependency.__name__ = f"require_{role}"
    return dependency


# Every route names one of these: the least role that may call it.
ViewerDep = Annotated[Actor, Depends(require(Role.viewer))]
OperatorDep = Annotated[Actor, Depends(require(Role.operator))]
AdminDep = Annotated[Actor, Depends(require(Role.admin))]


def audited(action: str) -> Any:
    """A route dependency recording `action` on the route's pipeline when the route succeeds,
    in the route's own transaction (for routes whose body does not record it itself)."""

    def dependency(
        request: Request, actor: Annotated[Actor, Depends(get_actor)], session: SessionDep
    ) -> Iterator[None]:
        yield
        target = f"pipelines/{request.path_params.get('name', '')}"
        audit.record(session=session, actor=actor, action=action, target=target)

    return Depends(dependency, scope="function")
