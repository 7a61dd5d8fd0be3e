"""A database with a long history, for bench/metrics.py and bench/reads.py.

Pipelines go in through the app's own code (`pipelines.service.create`); runs and their steps
go in as bulk inserts of the same columns the app writes (a million runs through the API
would take hours). Runs are spread over the pipelines, mostly completed, with a few failed,
rejected and skipped, fired by cron, by hand or by a metric, with durations from a second to
a few hours; they are not rolled up yet (the service's roll-up job counts them).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, create_engine, false, func, insert, select, text
from sqlalchemy.engine import make_url

from app.core import migrate
from app.core.db import make_engine, make_session_factory, unit_of_work
from app.core.settings import Settings
from app.pipelines import service as pipelines
from app.pipelines.parsing import parse_spec
from app.runs.models import Run, RunStep
from app.runs.service import STEPS
from app.runs.transitions import TERMINAL

CHUNK = 20_000
RESET_RUN_IDS = "SELECT setval(pg_get_serial_sequence('runs', 'id'), max(id)) FROM runs"
STATUSES = ("completed",) * 16 + ("failed", "failed", "rejected", "skipped")
TRIGGERS = ("cron", "cron", "manual", "metric")


def pipeline_name(i: int) -> str:
    return f"bench-pipeline-{i:05d}"


def pipeline_spec(i: int) -> dict[str, Any]:
    """A pipeline with a daily cron trigger that does not fire in the next three hours (the
    benchmarks measure reads and scrapes, not runs), on a scikit-learn dataset."""
    hour = (datetime.now(UTC).hour + 3 + i % 18) % 24
    return {
        "name": pipeline_name(i),
        "source": {"kind": "sklearn", "dataset": "iris"},
        "target": "target",
        "model": {"estimator": "sklearn.tree.DecisionTreeClassifier", "params": {}},
        "evaluation": {"metric": "accuracy", "holdout_fraction": 0.2},
        "triggers": [{"kind": "cron", "schedule": f"{i % 60} {hour} * * *", "timezone": "UTC"}],
        "concurrency": "skip",
    }


@dataclass(frozen=True)
class Seeded:
    url: str
    pipelines: int
    runs: int
    steps: int
    seconds: float


def seed(url: str, *, pipelines_count: int, runs: int, steps: bool, seed_value: int = 1) -> Seeded:
    """Migrate `url` and fill it; returns what went in and how long it took."""
    began = time.perf_counter()
    migrate.upgrade(url)
    engine = make_engine(url)
    settings = Settings(database_url=url)
    with unit_of_work(make_session_factory(engine)) as session:
        for i in range(pipelines_count):
            spec = parse_spec(pipeline_spec(i), settings)
            pipelines.create(session=session, spec=spec)
    with engine.connect() as connection:
        ids = list(connection.scalars(text("SELECT id FROM pipelines ORDER BY id")))
    rng = random.Random(seed_value)
    step_rows = 0
    runs_table, steps_table = _table(Run), _table(RunStep)
    with engine.begin() as connection:
        first = connection.scalar(select(Run.id).order_by(Run.id.desc()).limit(1)) or 0
        for start in range(0, runs, CHUNK):
            count = min(CHUNK, runs - start)
            rows = list(_runs(rng, ids, first + start, count, runs))
            connection.execute(insert(runs_table), rows)
            if steps:
                step_list = list(_steps(rows))
                connection.execute(insert(steps_table), step_list)
                step_rows += len(step_list)
        if connection.dialect.name == "postgresql":
            # The ids went in explicitly: move the sequence past them for the runs to come.
            connection.execute(
                text("SELECT setval(pg_get_serial_sequence('runs', 'id'), max(id)) FROM runs")
            )
    engine.dispose()
    return Seeded(url, pipelines_count, runs, step_rows, time.perf_counter() - began)


def _table(entity: type[Any]) -> Table:
    table: Table = entity.__table__
    return table


def _runs(
    rng: random.Random, pipeline_ids: list[int], first_id: int, count: int, total: int
) -> Iterator[dict[str, Any]]:
    now = datetime.now(UTC)
    for offset in range(count):
        run_id = first_id + offset + 1
        status = rng.choice(STATUSES)
        kind = rng.choice(TRIGGERS)
        # Oldest first, about a minute apart: ids and times grow together, as in real use.
        created = now - timedelta(minutes=(total - run_id))
        seconds = min(rng.lognormvariate(3.5, 1.5), 6 * 3600.0)
        started = None if status == "skipped" else created + timedelta(seconds=0.01)
        finished = created if started is None else started + timedelta(seconds=seconds)
        yield {
            "id": run_id,
            "pipeline_id": pipeline_ids[run_id % len(pipeline_ids)],
            "status": status,
            "trigger_kind": kind,
            "trigger_reason": f"{kind} (seeded)",
            "attempt": 1,
            "actor": "system",
            "created_at": created,
            "started_at": started,
            "finished_at": finished,
            "cancel_requested": False,
            "error": "Rejected: accuracy 0.61 < min_score 0.8" if status == "rejected" else None,
            "metrics": {"accuracy": round(rng.random(), 4)} if status == "completed" else {},
            "model_version": None,
            "rolled_up": False,
        }


def _steps(runs: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for run in runs:
        done = run["status"] == "completed"
        for position, name in enumerate(STEPS):
            yield {
                "run_id": run["id"],
                "position": position,
                "name": name,
                "status": "completed" if done else "skipped",
                "started_at": run["started_at"] if done else None,
                "finished_at": run["finished_at"] if done else None,
                "detail": f"{name} done" if done else None,
            }


def wait_rolled_up(url: str, timeout_s: float = 900) -> float:
    """Seconds from now until the service's roll-up job has counted every terminal run."""
    engine = create_engine(url)
    began = time.perf_counter()
    pending = select(func.count()).where(Run.rolled_up == false(), Run.status.in_(TERMINAL))
    try:
        while time.perf_counter() - began < timeout_s:
            with engine.connect() as connection:
                if not connection.scalar(pending):
                    return time.perf_counter() - began
            time.sleep(0.5)
    finally:
        engine.dispose()
    raise TimeoutError(f"the roll-up job had not caught up after {timeout_s:g} s")


def create_pg_database(admin_url: str) -> str:
    """A fresh, empty PostgreSQL database next to `admin_url`'s; returns its URL."""
    name = f"mlops_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin_url: str, url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        name = make_url(url).database
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
