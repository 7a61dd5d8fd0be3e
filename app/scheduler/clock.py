"""The clock: one in-process APScheduler that fires jobs and owns the worker threads.

Responsible for: starting and stopping the scheduler, the pool that executes runs, and the
housekeeping jobs (heartbeat, lease check). It holds no state of its own: everything it
needs to rebuild lives in the database, and its job store is memory only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING

log = logging.getLogger(__name__)
RUNS_POOL = "runs"
TICKS_POOL = "ticks"
# Event delivery waits on other people's servers: its own thread, so a slow receiver never
# holds up the heartbeat or the lease check in the default pool.
EVENTS_POOL = "events"


class Clock:
    def __init__(self, *, workers: int) -> None:
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(2),
                RUNS_POOL: ThreadPoolExecutor(workers),
                # Firing a tick is a short insert; its own pool keeps ticks on time while
                # every run worker is busy training.
                TICKS_POOL: ThreadPoolExecutor(4),
                EVENTS_POOL: ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone="UTC",
        )

    @property
    def running(self) -> bool:
        return bool(self.scheduler.state == STATE_RUNNING)

    def start(self) -> None:
        self.scheduler.start()

    def pause(self) -> None:
        """Stop firing jobs (ticks, queued runs, housekeeping); running ones go on."""
        if self.running:
            self.scheduler.pause()

    def shutdown(self, *, wait: bool) -> None:
        """Stop firing, then stop; runs still queued are picked up by the next start."""
        if self.scheduler.running:
            self.scheduler.pause()
            # APScheduler marks itself stopped before taking its job store lock, so a pass of
            # its loop still in flight would fail removing a fired job; wait that pass out.
            # Its final pass after shutdown then finds the (emptied) store has nothing due.
            with self.scheduler._jobstores_lock:
                pass
            self.scheduler.shutdown(wait=wait)

    def every(
        self, seconds: float, job_id: str, func: Callable[[], None], *, pool: str = "default"
    ) -> None:
        """A housekeeping job; a failure is logged and the next tick runs as usual."""
        self.scheduler.add_job(
            _logged(job_id, func),
            "interval",
            seconds=seconds,
            id=job_id,
            replace_existing=True,
            executor=pool,
        )


def _logged(job_id: str, func: Callable[[], None]) -> Callable[[], None]:
    def job() -> None:
        try:
            func()
        except Exception:
            log.exception("housekeeping job %s failed", job_id)

    return job
