"""Crash points for the tests that kill the service at chosen moments.

`MLOPS_CRASH_AT=<point>` makes the process SIGKILL itself when it reaches that point, so a
test can prove that a crash there loses nothing and doubles nothing. Unset, it costs one
dictionary lookup.
"""

from __future__ import annotations

import os
import signal

POINTS = frozenset({"after_run_insert", "during_train", "before_promotion_commit"})


def crash_point(name: str) -> None:
    """Die here, at once and without cleaning up, if the environment asks for it."""
    assert name in POINTS, name
    if os.environ.get("MLOPS_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
