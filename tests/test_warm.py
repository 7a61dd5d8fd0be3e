"""Warm start: `mlops serve` reports ready only once a training process is up, so the first
run after a start waits for no imports and no new process; a retired training process is
replaced at once, not when the next run needs one."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.execution import processes
from app.execution.processes import Children
from tests.server import Server
from tests.workers import descendants

# The forkserver, its resource tracker and one training process (a forkserver child).
WARM_PROCESSES = 3


@pytest.fixture
def children() -> Iterator[Children]:
    pool = Children()
    yield pool
    pool.close()


def test_warm_starts_a_child_that_the_next_call_uses(children: Children) -> None:
    children.warm()
    assert children.idle() == 1
    warm_pid = children._idle[0].process.pid
    assert children.call(os.getpid) == warm_pid
    children.warm()  # one is idle already: nothing more starts
    assert children.idle() == 1


def test_a_retired_child_is_replaced_before_the_next_call(
    children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(processes, "CALLS_PER_CHILD", 2)
    first = {children.call(os.getpid) for _ in range(2)}  # the second call retires it
    deadline = time.monotonic() + 30
    while children.idle() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children.idle() == 1  # its successor, started without a call
    assert children.call(os.getpid) not in first


def test_serve_is_ready_with_a_training_process_up(tmp_path: Path) -> None:
    server = Server(tmp_path, MLOPS_WARM_START="true")
    try:
        server.start()
        assert server.process is not None
        assert len(descendants(server.process.pid)) >= WARM_PROCESSES
        assert httpx.get(f"{server.url}/readyz").json()["status"] == "ready"
    finally:
        server.kill()


def test_without_warm_start_no_training_process_runs_until_a_run(tmp_path: Path) -> None:
    server = Server(tmp_path, MLOPS_WARM_START="false")
    try:
        server.start()
        assert server.process is not None
        assert len(descendants(server.process.pid)) < WARM_PROCESSES
    finally:
        server.kill()
