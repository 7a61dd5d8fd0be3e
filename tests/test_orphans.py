"""A SIGKILLed `mlops serve` leaves nothing behind: no training process, forkserver or
resource tracker outlives it, and another replica settles its run within 15 s with the
default settings (same host: the owner's pid is checked), after which ticks fire again."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import create_pg_database, drop_pg_database
from tests.factories import churn_frame, pipeline_spec, write_csv
from tests.server import Server
from tests.workers import descendants, wait_gone

pytestmark = pytest.mark.postgres
NAME = "retrain-customer-model"


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[list[Server]]:
    """Two replicas on one PostgreSQL database, default lease and heartbeat settings."""
    url = create_pg_database()
    servers = [Server(tmp_path / name, database_url=url) for name in ("a", "b")]
    try:
        for server in servers:
            server.workdir.mkdir()
            write_csv(server.workdir / "data" / "customers.csv", churn_frame(3000))
            server.start()
        yield servers
    finally:
        for server in servers:
            server.kill()
        drop_pg_database(url)


def slow_pipeline() -> dict[str, Any]:
    model = {
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 3000, "n_jobs": 1, "random_state": 0},
    }
    return pipeline_spec(model=model, triggers=[{"kind": "interval", "every_s": 2}])


def training_run(server: Server, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with server.api() as api:
        while True:
            for run in api.get(f"/pipelines/{NAME}/runs").json()["items"]:
                steps = {step["name"]: step["status"] for step in run["steps"]}
                if steps.get("train") == "running":
                    return run
            assert time.monotonic() < deadline, "no run reached training"
            time.sleep(0.05)


def test_sigkill_serve_mid_fit_leaves_nothing_and_ticks_resume(pair: list[Server]) -> None:
    with pair[0].api() as api:
        assert api.post("/pipelines", json=slow_pipeline()).status_code == 201
    run = training_run(pair[0])
    owner_pid = int(run["worker"].rpartition(":")[2])
    [owner] = [s for s in pair if s.process is not None and s.process.pid == owner_pid]
    [live] = [s for s in pair if s is not owner]
    assert owner.process is not None
    # The forkserver, the resource tracker, and the training process once it has forked.
    deadline = time.monotonic() + 20
    while len(tree := descendants(owner.process.pid)) < 3:
        assert time.monotonic() < deadline, f"no training process below the service: {tree}"
        time.sleep(0.1)
    owner.process.send_signal(signal.SIGKILL)
    owner.process.wait()
    killed_at = time.monotonic()
    assert wait_gone(tree, 5) == set(), "processes of the killed service outlived it"
    with live.api() as api:
        while (ended := api.get(f"/runs/{run['id']}").json())["status"] == "running":
            assert time.monotonic() - killed_at < 15, "the run was not settled within 15 s"
            time.sleep(0.1)
        assert ended["error"] == "Worker lost: its process died"
        settled_at = datetime.fromisoformat(ended["finished_at"])
        # The interval trigger fires again: a run created after the settlement is not skipped.
        deadline = time.monotonic() + 15
        while not any(
            datetime.fromisoformat(later["created_at"]) > settled_at
            and later["status"] != "skipped"
            for later in api.get(f"/pipelines/{NAME}/runs").json()["items"]
        ):
            assert time.monotonic() < deadline, "no tick fired after the run was settled"
            time.sleep(0.2)
