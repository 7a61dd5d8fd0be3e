"""The clock: one in-process APScheduler that fires jobs and owns the worker threads.

Responsible for: starting and stopping the scheduler, the pool that executes runs, and the
housekeeping jobs (heartbeat, lease check). It holds no state of its own: everything it
needs to rebuild lives in the database, and its job store is memory only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING

log = logging.getLogger(__name__)
RUNS_POOL = "runs"


class _KeepingJobStore(MemoryJobStore):  # type: ignore[misc]
    """A memory job store that keeps its jobs at shutdown.

    APScheduler's loop may still be removing a just-fired job while `shutdown()` empties the
    store, which raises in its thread; the jobs are garbage once the clock stops anyway.
    """

    def shutdown(self) -> None:
        return None


class Clock:
    def __init__(self, *, workers: int) -> None:
        self.scheduler = BackgroundScheduler(
            jobstores={"default": _KeepingJobStore()},
            executors={
                "default": ThreadPoolExecutor(2),
                RUNS_POOL: ThreadPoolExecutor(workers),
            },
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone="UTC",
        )

    @property
    def running(self) -> bool:
        return bool(self.scheduler.state == STATE_RUNNING)

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self, *, wait: bool) -> None:
        """Stop firing, then stop; runs still queued are picked up by the next start."""
        if self.scheduler.running:
            self.scheduler.pause()
            self.scheduler.shutdown(wait=wait)

    def every(self, seconds: float, job_id: str, func: Callable[[], None]) -> None:
        """A housekeeping job; a failure is logged and the next tick runs as usual."""
        self.scheduler.add_job(
            _logged(job_id, func), "interval", seconds=seconds, id=job_id, replace_existing=True
        )


def _logged(job_id: str, func: Callable[[], None]) -> Callable[[], None]:
    def job() -> None:
        try:
            func()
        except Exception:
            log.exception("housekeeping job %s failed", job_id)

    return job
