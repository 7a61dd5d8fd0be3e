"""Keep what a process loads at start-up out of the garbage collector's full passes, and the
memory a run frees for the next run.

Responsible for: the pause of a full collection, and the allocator's page faults.

CPython's collector walks every tracked object now and then; once scikit-learn, pandas, skops
and the app are imported that is about 270,000 objects, and on the machines we measure one full
pass holds the interpreter lock for ~0.24 s: a run, a tick or a request that meets it waits
that long, at random. Objects loaded at start-up live as long as the process, so walking them
again finds nothing to free. `settle()` collects once, then moves every object alive into the
permanent generation (gc.freeze), which later passes skip. Objects made later are collected as
before, and a frozen object is still freed when its last reference goes; only a reference cycle
among frozen objects would never be collected, which is why `settle()` collects first.

glibc's allocator serves a block over its mmap threshold (128 kB at start) from fresh pages
and unmaps them when it is freed, and hands an arena's free memory back to the OS beyond its
trim threshold; it raises both as large blocks come and go, up to 32 MB and 64 MB, but each of
a service's many threads (compute threads, request threads) allocates from one of up to 16
arenas, so a run's arrays kept landing on fresh pages. A data-heavy run (282,000 rows read,
checked, hashed and profiled in the service) took ~19,000 page faults and 335-380 ms of the
service's CPU (medians of three services, ten runs each). `keep_freed_memory()` sets both
thresholds at their ceilings and caps the arenas at 2: ~8,000 faults and 270-330 ms, for 50-70
MB more resident memory (without the cap, ~11,000 faults and ~150 MB more memory). A forest's
run on 36,000 rows: 3,000 faults against 1,100, the same CPU and memory.

That still left the first run after a start on fresh pages: the arenas hold only what the
start-up needed. Reading and checking 400,000 rows x 10 columns took ~45,000 page faults and
~150 ms more of the service's CPU in the first run than in the next, ~90 ms of it in
load_data, before the fit could start. `keep_reserve(size)` has each arena keep `size` bytes
free whenever it trims, and `fault_in(size)`, called once in each thread that runs a run's work,
writes that much memory there first: the first run then faults and costs what the next does.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
import time

log = logging.getLogger(__name__)
# mallopt(3) parameters and the values keep_freed_memory() sets.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -2, -3, -8
ALLOCATOR = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20, M_ARENA_MAX: 2}
BLOCK = 1 << 20  # fault_in's blocks: under the mmap threshold, so they come from the arena


def settle() -> None:
    """Collect, then freeze every object alive: call it once start-up has loaded everything."""
    start = time.perf_counter()
    gc.collect()
    gc.freeze()
    log.debug(
        "froze %s objects after start-up (%.0f ms)",
        gc.get_freeze_count(),
        (time.perf_counter() - start) * 1000,
    )


def keep_freed_memory() -> bool:
    """Have glibc keep what a run frees for the next one (see above); call it first thing in a
    service process. False, changing nothing, where the C library is not glibc or where the
    operator tunes its allocator (MALLOC_* variables, glibc.malloc tunables)."""
    if _operator_tunes():
        log.info("the memory allocator is left as the environment sets it")
        return False
    if not _set(ALLOCATOR):
        return False
    log.info(
        "the memory allocator keeps freed memory for the next run: blocks up to %d MB from "
        "its arenas, up to %d MB free in each, %d arenas",
        ALLOCATOR[M_MMAP_THRESHOLD] >> 20,
        ALLOCATOR[M_TRIM_THRESHOLD] >> 20,
        ALLOCATOR[M_ARENA_MAX],
    )
    return True


def keep_reserve(size: int) -> bool:
    """Have every arena keep `size` bytes free whenever glibc trims it (its top pad), so that
    memory fault_in() wrote stays there for runs; False where keep_freed_memory() would be."""
    return not _operator_tunes() and _set({M_TOP_PAD: size})


def fault_in(size: int) -> None:
    """Write `size` bytes (rounded down to whole blocks) from the calling thread's arena and
    free them: with keep_reserve(size) they stay mapped, ready for the thread's next blocks."""
    blocks = [b"\x01" * BLOCK for _ in range(size // BLOCK)]
    del blocks


def _operator_tunes() -> bool:
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return any(name.startswith("MALLOC_") for name in os.environ) or "glibc.malloc." in tunables


def _set(params: dict[int, int]) -> bool:
    if sys.platform != "linux":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # musl has a mallopt that does nothing and answers 0; glibc answers 1 for each one it took.
    return all([mallopt(param, value) == 1 for param, value in params.items()])
