"""Several replicas on one PostgreSQL database fire each tick exactly once, and none is lost."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import create_pg_database, drop_pg_database
from tests.factories import churn_frame, pipeline_spec, write_csv
from tests.server import Server

TINY = {
    "name": "every-second",
    "source": {"kind": "sklearn", "dataset": "iris"},
    "target": "target",
    "model": {"estimator": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 2}},
    "evaluation": {"metric": "accuracy", "min_improvement": -1},
    "triggers": [{"kind": "interval", "every_s": 1}],
    "concurrency": "queue",
}
SECONDS = 60


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[str, list[Server]]]:
    url = create_pg_database()
    servers = [
        Server(tmp_path / f"replica-{i}", database_url=url, MLOPS_RECONCILE_S="0.5")
        for i in range(3)
    ]
    try:
        for server in servers:
            server.workdir.mkdir()
            server.start()
        yield url, servers
    finally:
        for server in servers:
            server.kill()
        drop_pg_database(url)


@pytest.mark.postgres
def test_three_replicas_fire_each_tick_once(replicas: tuple[str, list[Server]]) -> None:
    url, servers = replicas
    with servers[0].api() as api:
        assert api.post("/pipelines", json=TINY).status_code == 201
        time.sleep(SECONDS)
        api.post("/pipelines/every-second/pause")
    time.sleep(2)  # let the last runs finish
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT scheduled_for, fire_key, status FROM runs ORDER BY scheduled_for")
        ).all()
    engine.dispose()
    ticks = [row.scheduled_for for row in rows]
    assert len(ticks) >= SECONDS - 5, f"only {len(ticks)} ticks fired in {SECONDS} s"
    assert len(set(ticks)) == len(ticks)
    assert len({row.fire_key for row in rows}) == len(rows)
    gaps = [b - a for a, b in itertools.pairwise(ticks) if b - a != timedelta(seconds=1)]
    assert gaps == [], f"ticks missing between fires: {gaps}"
    for server in servers:
        log = server.log.read_text()
        assert "Traceback" not in log, log[-3000:]


@pytest.fixture
def leased_pair(tmp_path: Path) -> Iterator[list[Server]]:
    """Two replicas on one PostgreSQL database with a 2 s lease, both serving the churn CSV."""
    url = create_pg_database()
    lease = {"MLOPS_LEASE_S": "2", "MLOPS_HEARTBEAT_S": "0.5"}
    servers = [Server(tmp_path / name, database_url=url, **lease) for name in ("a", "b")]
    try:
        for server in servers:
            server.workdir.mkdir()
            write_csv(server.workdir / "data" / "customers.csv", churn_frame(3000))
            server.start()
        yield servers
    finally:
        for server in servers:
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGCONT)
            server.kill()
        drop_pg_database(url)


def start_forest(server: Server, trees: int) -> int:
    """Create a random-forest pipeline on `server`, trigger it, return once it is training."""
    model = {
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": trees, "n_jobs": 1, "random_state": 0},
    }
    with server.api() as api:
        api.post("/pipelines", json=pipeline_spec(model=model))
        run_id: int = api.post("/pipelines/retrain-customer-model/runs").json()["id"]
        deadline = time.monotonic() + 60
        while not any(
            step["name"] == "train" and step["status"] == "running"
            for step in api.get(f"/runs/{run_id}").json()["steps"]
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    return run_id


def wait_reaped(server: Server, run_id: int, timeout: float = 30) -> dict[str, Any]:
    """Poll another replica until the run is no longer running."""
    deadline = time.monotonic() + timeout
    with server.api() as api:
        while (run := api.get(f"/runs/{run_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, "the lost run was never reaped"
            time.sleep(0.1)
    return run


@pytest.mark.postgres
def test_a_live_replica_ends_the_runs_of_a_dead_one(leased_pair: list[Server]) -> None:
    dead, live = leased_pair
    run_id = start_forest(dead, trees=3000)
    dead.kill()
    killed_at = time.monotonic()
    run = wait_reaped(live, run_id)
    took = time.monotonic() - killed_at
    assert run["status"] == "failed"
    # Same host: the dead owner's pid is checked, so the lease need not run out first.
    assert run["error"] == "Worker lost: its process died"
    assert took < 2 + 1 + 2, f"reaped after {took:.1f} s (lease 2 s, checked every 1 s)"


@pytest.mark.postgres
def test_a_worker_that_lost_its_lease_never_promotes(leased_pair: list[Server]) -> None:
    frozen, live = leased_pair
    run_id = start_forest(frozen, trees=600)
    assert frozen.process is not None
    frozen.process.send_signal(signal.SIGSTOP)  # alive, but silent: no heartbeats
    run = wait_reaped(live, run_id)
    frozen.process.send_signal(signal.SIGCONT)
    time.sleep(10)  # the old worker finishes training and reaches its next step boundary
    with live.api() as api:
        after = api.get(f"/runs/{run_id}").json()
        ledger = api.get("/pipelines/retrain-customer-model/promotions").json()
        status = api.get("/pipelines/retrain-customer-model/status").json()
    assert run["error"] == after["error"] == "Worker lost: its process stopped heartbeating"
    assert after["status"] == "failed"
    assert ledger == []
    assert status["production_version"] is None
