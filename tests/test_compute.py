"""The service's compute threads (app.execution.compute)."""

from __future__ import annotations

import itertools
import threading
import time

from app.execution import compute


def test_on_threads_calls_in_as_many_threads_one_at_a_time() -> None:
    calls: list[tuple[int, float, float]] = []

    def record() -> None:
        began = time.monotonic()
        time.sleep(0.02)
        calls.append((threading.get_ident(), began, time.monotonic()))

    compute.on_threads(3, record)
    assert len({ident for ident, _, _ in calls}) == 3
    spans = sorted((began, ended) for _, began, ended in calls)
    assert all(ended <= next_began for (_, ended), (next_began, _) in itertools.pairwise(spans))
