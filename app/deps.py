"""The service container and the Annotated dependency aliases routes use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app.core.db import SessionFactory, read_only_unit, unit_of_work
from app.core.settings import Settings
from app.executors.thread import ThreadExecutor
from app.registry.artifacts import LocalArtifactStore
from app.registry.serving import ModelCache
from app.runs.env import WorkerEnv
from app.scheduler.clock import Clock
from app.scheduler.service import TimeScheduler


@dataclass(frozen=True)
class Services:
    settings: Settings
    engine: Engine
    factory: SessionFactory
    clock: Clock
    executor: ThreadExecutor
    artifacts: LocalArtifactStore
    models: ModelCache
    env: WorkerEnv
    scheduler: TimeScheduler


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """The request's transaction: committed when the route returns, rolled back on error."""
    # Not queued: a request's transaction spans several threadpool hops, and threads parked
    # on the queue could starve the hop that would end the transaction holding it.
    with unit_of_work(services.factory, queue=False) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client that reads
# right after a 201/202 sees what it was told about.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_read_session(services: ServicesDep) -> Iterator[Session]:
    """A read-only transaction for routes that change nothing."""
    with read_only_unit(services.factory) as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


def get_actor() -> str:
    """Who is asking; API keys replace this with the key's name."""
    return "anonymous"


ActorDep = Annotated[str, Depends(get_actor)]
