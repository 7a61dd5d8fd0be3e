"""Where a run's in-process heavy work executes: threads with a lower CPU priority.

Responsible for: the CPU-bound parts of runs that stay in the service's process (reading data,
validating, splitting, scoring, hashing and profiling); fits and artifacts go to training
processes (app.execution.processes). This work shares the process with the clock, the claims and
the API; raising these threads' nice value (per thread on Linux) lets the scheduler run the
short control-plane work first, and runs still get every idle cycle.

Database writes stay in the calling thread: a low-priority thread holding the database's
write lock would make every tick and request wait for it (priority inversion).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")
# +10: a nice-0 thread gets about ten times the CPU of a training when both want it.
NICE = 10
# Threads are created on demand and reused; the bound only caps a burst.
MAX_THREADS = 256


def _lower_priority() -> None:
    if sys.platform != "linux":
        return  # elsewhere the nice value belongs to the whole process
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    except OSError as exc:
        log.warning("could not lower the priority of a compute thread: %s", exc)


_POOL = ThreadPoolExecutor(
    max_workers=MAX_THREADS, thread_name_prefix="mlops-compute", initializer=_lower_priority
)


def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call fn in a compute thread and wait for its result (or its exception)."""
    return _POOL.submit(fn, *args, **kwargs).result()


def submit(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Start fn in a compute thread; the caller collects the result later."""
    return _POOL.submit(fn, *args, **kwargs)


def on_threads(count: int, fn: Callable[[], None]) -> None:
    """fn() in `count` different compute threads, one after another: what a thread leaves in
    its own allocator arena (app.core.heap.fault_in) is then there in each of the threads that
    later runs' work is most likely to take. They all wait until `count` threads have started."""
    started = threading.Barrier(count)
    one_at_a_time = threading.Lock()

    def call() -> None:
        started.wait()
        with one_at_a_time:
            fn()

    for future in [submit(call) for _ in range(count)]:
        future.result()
