"""The Celery executor: runs go to `mlops worker` processes through a Redis or RabbitMQ broker.

Responsible for: the Celery app and its delivery settings, sending a run id to its pipeline's
queue, and what the API reports about the broker (reachable, queue depths, workers seen).
Tasks carry run ids only; the database decides who executes a run (the claim in
app.execution.worker), so a task delivered twice executes once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from celery import Celery
from sqlalchemy import select

from app.core.db import SessionFactory, read_only_unit
from app.core.settings import Settings
from app.core.time import utcnow
from app.pipelines.models import Pipeline
from app.runs.models import Run

log = logging.getLogger(__name__)
TASK = "mlops.execute_run"
DEFAULT_QUEUE = "default"
# Celery node names are `name@host`; a worker's is this prefix and its `--name`.
NODE_PREFIX = "mlops@"
PING_TIMEOUT_S = 0.5
# A worker that died holding a task (unacknowledged) gets it redelivered after this; by then
# its run's lease has run out and the run was settled, so the redelivery claims nothing.
VISIBILITY_LEASES = 6


def make_celery(settings: Settings) -> Celery:
    """The Celery app for MLOPS_BROKER_URL, delivering each task at least once."""
    app = Celery("mlops", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=DEFAULT_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=2,
        broker_transport_options={
            "visibility_timeout": max(3600.0, settings.lease_s * VISIBILITY_LEASES),
        },
    )
    return app


def register(app: Celery, execute: Callable[[int], None]) -> None:
    """Make this process a worker: the task executes the run whose id it carries."""

    @app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def execute_run(run_id: int) -> None:
        execute(run_id)


class CeleryExecutor:
    """Sends runs to the broker; this process executes none of them."""

    def __init__(self, app: Celery, factory: SessionFactory) -> None:
        self.app = app
        self._factory = factory

    def submit(self, run_id: int, *, not_before: datetime | None = None) -> None:
        """Send the run's id to its pipeline's queue, to start not before `not_before`."""
        eta = not_before if not_before is not None and not_before > utcnow() else None
        queue = self._queue_of(run_id)
        if queue is None:
            return
        try:
            self.app.send_task(TASK, args=[run_id], queue=queue, eta=eta)
        except Exception:
            # The run stays queued in the database; the lease check sends it again.
            log.exception("could not send run %s to the broker", run_id)

    def queue_depth(self) -> int:
        """Runs waiting in this process: none, the broker holds them."""
        return 0

    def executing(self) -> int:
        """Runs this process is executing: none, workers do."""
        return 0

    def _queue_of(self, run_id: int) -> str | None:
        with read_only_unit(self._factory) as session:
            spec = session.execute(
                select(Pipeline.spec)
                .join(Run, Run.pipeline_id == Pipeline.id)
                .where(Run.id == run_id)
            ).scalar_one_or_none()
        if spec is None:
            return None
        return str(spec.get("queue") or DEFAULT_QUEUE)


class BrokerProbe:
    """What /readyz and /metrics say about the broker, asked at most every `ttl_s`."""

    def __init__(self, app: Celery, ttl_s: float = 5.0) -> None:
        self.app = app
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._workers: tuple[float, list[str]] = (0.0, [])

    def reachable(self) -> bool:
        """True when a connection to the broker opens within two seconds."""
        try:
            with self.app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=2)
            return True
        except Exception:
            return False

    def depths(self, queues: list[str]) -> dict[str, int]:
        """Messages waiting in each queue (0 for a queue the broker does not know yet)."""
        found: dict[str, int] = {}
        with self.app.connection_for_read() as connection:
            for queue in queues:
                found[queue] = _depth(connection, queue)
        return found

    def workers(self) -> list[str]:
        """Names of the workers that answered a ping recently."""
        with self._lock:
            asked_at, names = self._workers
            if time.monotonic() - asked_at < self._ttl_s:
                return names
            try:
                replies = self.app.control.ping(timeout=PING_TIMEOUT_S) or []
            except Exception:
                replies = []
            names = sorted(node.removeprefix(NODE_PREFIX) for reply in replies for node in reply)
            self._workers = (time.monotonic(), names)
            return names


def _depth(connection: Any, queue: str) -> int:
    channel = connection.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception:
        return 0
    finally:
        try:
            channel.close()
        except Exception:
            log.debug("closing a probe channel failed", exc_info=True)
