"""Several replicas on one PostgreSQL database fire each tick exactly once, and none is lost."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import create_pg_database, drop_pg_database
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
