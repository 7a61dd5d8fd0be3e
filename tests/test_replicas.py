"""Several replicas on one PostgreSQL database fire each tick exactly once, and none is lost."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

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


@pytest.mark.postgres
def test_a_live_replica_ends_the_runs_of_a_dead_one(tmp_path: Path) -> None:
    url = create_pg_database()
    lease = {"MLOPS_LEASE_S": "3", "MLOPS_HEARTBEAT_S": "0.5"}
    servers = [Server(tmp_path / name, database_url=url, **lease) for name in ("a", "b")]
    try:
        for server in servers:
            server.workdir.mkdir()
            write_csv(server.workdir / "data" / "customers.csv", churn_frame(3000))
        first, second = (server.start() for server in servers)
        slow = {
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 3000, "n_jobs": 1, "random_state": 0},
        }
        with first.api() as api:
            api.post("/pipelines", json=pipeline_spec(model=slow))
            run_id = api.post("/pipelines/retrain-customer-model/runs").json()["id"]
            deadline = time.monotonic() + 60
            while api.get(f"/runs/{run_id}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.05)
        first.kill()
        killed_at = time.monotonic()
        with second.api() as api:
            while (run := api.get(f"/runs/{run_id}").json())["status"] == "running":
                assert time.monotonic() - killed_at < 30, "the lost run was never reaped"
                time.sleep(0.1)
        took = time.monotonic() - killed_at
    finally:
        for server in servers:
            server.kill()
        drop_pg_database(url)
    assert run["status"] == "failed"
    assert run["error"] == "Worker lost: its process stopped heartbeating"
    assert took < 3 + 1.5 + 2, f"reaped after {took:.1f} s (lease 3 s, check every 1.5 s)"


@pytest.mark.postgres
def test_a_worker_that_lost_its_lease_never_promotes(tmp_path: Path) -> None:
    url = create_pg_database()
    lease = {"MLOPS_LEASE_S": "2", "MLOPS_HEARTBEAT_S": "0.5"}
    servers = [Server(tmp_path / name, database_url=url, **lease) for name in ("a", "b")]
    try:
        for server in servers:
            server.workdir.mkdir()
            write_csv(server.workdir / "data" / "customers.csv", churn_frame(3000))
        frozen, live = (server.start() for server in servers)
        medium = {
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 300, "n_jobs": 1, "random_state": 0},
        }
        with frozen.api() as api:
            api.post("/pipelines", json=pipeline_spec(model=medium))
            run_id = api.post("/pipelines/retrain-customer-model/runs").json()["id"]
            deadline = time.monotonic() + 60
            while api.get(f"/runs/{run_id}").json()["status"] != "running":
                assert time.monotonic() < deadline
                time.sleep(0.02)
        assert frozen.process is not None
        frozen.process.send_signal(signal.SIGSTOP)  # alive, but silent: no heartbeats
        with live.api() as api:
            deadline = time.monotonic() + 30
            while api.get(f"/runs/{run_id}").json()["status"] == "running":
                assert time.monotonic() < deadline, "the silent run was never reaped"
                time.sleep(0.1)
            frozen.process.send_signal(signal.SIGCONT)
            time.sleep(8)  # the old worker finishes training and reaches the promotion
            run = api.get(f"/runs/{run_id}").json()
            ledger = api.get("/pipelines/retrain-customer-model/promotions").json()
            status = api.get("/pipelines/retrain-customer-model/status").json()
    finally:
        for server in servers:
            if server.process is not None and server.process.poll() is None:
                server.process.send_signal(signal.SIGCONT)
            server.kill()
        drop_pg_database(url)
    assert run["status"] == "failed"
    assert run["error"] == "Worker lost: its process stopped heartbeating"
    assert ledger == []
    assert status["production_version"] is None
