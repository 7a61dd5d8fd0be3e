"""`mlops worker`: a process that executes runs it takes from the Celery broker.

Responsible for: building the worker's environment (database, artifact store, the executor
that sends retries back to the broker), the housekeeping every run owner does (heartbeat,
settling runs of dead owners), and running Celery's consumer with its thread pool, which can
start training processes (prefork children cannot).
"""

from __future__ import annotations

import logging
import os
import socket
import time

from celery import Celery

from app.core import heap, migrate
from app.core.db import make_engine, make_session_factory
from app.core.settings import Settings
from app.execution import processes, recovery
from app.execution.env import WorkerEnv
from app.executors.celery import NODE_PREFIX, CeleryExecutor, make_celery, register
from app.registry.serving import ModelCache
from app.registry.stores import open_store
from app.scheduler.clock import Clock
from app.scheduler.housekeeping import schedule_recovery

log = logging.getLogger("mlops.worker")
MIGRATE_ATTEMPTS = 30


def default_name() -> str:
    """`<hostname>:<pid>`, as runs name a `mlops serve` process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(settings: Settings, *, name: str, concurrency: int, queues: list[str]) -> None:
    """Serve runs from `queues` until stopped (SIGTERM: finish the runs in hand, then exit)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    heap.keep_freed_memory()
    settings = settings.model_copy(update={"executor": "celery"})
    _upgrade(settings)
    env, app = _environment(settings, name)
    register(app, lambda run_id: _execute(run_id, env))
    _warm_up(env)
    clock = Clock(workers=1)
    clock.start()
    recovery.recover_at_start(env)
    schedule_recovery(clock, env)
    log.info("worker %s: queues %s, concurrency %s", name, ",".join(queues), concurrency)
    try:
        worker = app.Worker(
            hostname=f"{NODE_PREFIX}{name}",
            concurrency=concurrency,
            # Threads even for one: the consumer then answers pings and control while a
            # run executes (solo blocks it), and a thread may start training processes.
            pool_cls="threads",
            queues=queues,
            loglevel="INFO",
            without_mingle=True,
            without_gossip=True,
        )
        worker.start()
    finally:
        clock.shutdown(wait=False)
        recovery.interrupt_owned(env)


def _environment(settings: Settings, name: str) -> tuple[WorkerEnv, Celery]:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    app = make_celery(settings)
    store = open_store(settings, engine)
    executor = CeleryExecutor(app, factory)
    env = WorkerEnv(
        factory, settings, store, executor, recovery.owner_id(), ModelCache(store), name
    )
    return env, app


def _warm_up(env: WorkerEnv) -> None:
    """Import the run code, start a training process and load production's models now, not
    with the first run: a run's start then waits for nothing but its claim."""
    from app.execution import worker

    processes.start_forkserver()
    worker.warm_up()
    worker.prepare(env)


def _execute(run_id: int, env: WorkerEnv) -> None:
    from app.execution import worker

    worker.execute(run_id, env)


def _upgrade(settings: Settings) -> None:
    """Migrate; a replica migrating at the same moment may win, so try again after it."""
    for attempt in range(MIGRATE_ATTEMPTS):
        try:
            migrate.upgrade(settings.resolved_database_url)
            return
        except Exception:
            if attempt == MIGRATE_ATTEMPTS - 1:
                raise
            log.warning("database migration failed; trying again", exc_info=True)
            time.sleep(1)
