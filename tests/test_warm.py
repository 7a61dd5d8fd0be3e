"""Warm start: `mlops serve` reports ready only once a training process is up, so the first
run after a start waits for no imports and no new process (the pool's warm() and its refill
of a retired process are tested in test_processes.py)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.server import Server
from tests.workers import descendants

# The forkserver, its resource tracker and one training process (a forkserver child).
WARM_PROCESSES = 3


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
