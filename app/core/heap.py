"""Keep what a process loads at start-up out of the garbage collector's full passes.

Responsible for: the pause of a full collection. CPython's collector walks every tracked
object now and then; once scikit-learn, pandas, skops and the app are imported that is about
270,000 objects, and on the machines we measure one full pass holds the interpreter lock for
~0.24 s: a run, a tick or a request that meets it waits that long, at random. Objects loaded
at start-up live as long as the process, so walking them again finds nothing to free.
`settle()` collects once, then moves every object alive into the permanent generation
(gc.freeze), which later passes skip. Objects made later are collected as before, and a frozen
object is still freed when its last reference goes; only a reference cycle among frozen
objects would never be collected, which is why `settle()` collects first.
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)


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
