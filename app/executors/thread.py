"""The thread executor: runs execute in the clock's worker threads, never on the event loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from app.core.time import utcnow
from app.scheduler.clock import RUNS_POOL, Clock

log = logging.getLogger(__name__)


class ThreadExecutor:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._run: Callable[[int], None] | None = None
        self._pending = 0
        self._executing = 0
        self._lock = threading.Lock()

    def bind(self, run: Callable[[int], None]) -> None:
        """Set the function that executes one run (set once the worker env exists)."""
        self._run = run

    def submit(self, run_id: int, *, not_before: datetime | None = None) -> None:
        """Execute the run in a worker thread, now or at `not_before`."""
        when = not_before if not_before is not None and not_before > utcnow() else None
        if not self._clock.running:
            # Shutting down: the run stays queued in the database and the next start
            # (or another replica's lease check) hands it to a worker.
            log.info("not submitting run %s: the scheduler is stopping", run_id)
            return
        with self._lock:
            self._pending += 1
        self._clock.scheduler.add_job(
            self._execute,
            "date",
            run_date=when,
            args=[run_id],
            executor=RUNS_POOL,
            misfire_grace_time=None,
        )

    def queue_depth(self) -> int:
        with self._lock:
            return self._pending

    def executing(self) -> int:
        """Runs a worker thread is executing right now."""
        with self._lock:
            return self._executing

    def _execute(self, run_id: int) -> None:
        with self._lock:
            self._executing += 1
        try:
            assert self._run is not None, "executor used before bind()"
            self._run(run_id)
        finally:
            with self._lock:
                self._pending -= 1
                self._executing -= 1
