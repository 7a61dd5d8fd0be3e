"""SIGKILL at chosen points of a run's life, on SQLite and PostgreSQL: after a restart every
fire has exactly one run, nothing stays `running`, and no model is promoted twice."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories import churn_frame, pipeline_spec, write_csv
from tests.server import Server

NAME = "retrain-customer-model"
FINAL = {"completed", "failed", "rejected", "awaiting_approval", "cancelled", "skipped"}


def wait_dead(server: Server, timeout: float = 60) -> None:
    assert server.process is not None
    server.process.wait(timeout=timeout)
    assert server.process.returncode == -9, "the crash point was not reached"


def settle(api: httpx.Client, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs: list[dict[str, Any]] = api.get(f"/pipelines/{NAME}/runs").json()["items"]
        if runs and all(r["status"] in FINAL for r in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"runs did not settle: {api.get(f'/pipelines/{NAME}/runs').json()}")


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ("after_run_insert", "completed"),  # queued, never handed to a worker: resubmitted
        ("during_train", "failed"),  # interrupted by restart
        ("before_promotion_commit", "failed"),  # the promotion rolled back with the process
    ],
)
def test_sigkill_loses_nothing_and_doubles_nothing(
    fresh_database: str | None, tmp_path: Path, point: str, expected: str
) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    crashing = Server(tmp_path, database_url=fresh_database, MLOPS_CRASH_AT=point).start()
    with crashing.api() as api:
        assert api.post("/pipelines", json=pipeline_spec()).status_code == 201
        with contextlib.suppress(httpx.HTTPError):  # it may die before it answers
            api.post(f"/pipelines/{NAME}/runs", headers={"Idempotency-Key": "fire-1"})
    wait_dead(crashing)
    restarted = Server(tmp_path, database_url=fresh_database)
    restarted.port, restarted.url = crashing.port, crashing.url
    restarted.start()
    try:
        with restarted.api() as api:
            runs = settle(api)
            again = api.post(f"/pipelines/{NAME}/runs", headers={"Idempotency-Key": "fire-1"})
            ledger = api.get(f"/pipelines/{NAME}/promotions").json()
            models = api.get(f"/pipelines/{NAME}/models").json()
    finally:
        restarted.kill()
    assert [r["status"] for r in runs] == [expected], runs
    if expected == "failed":
        assert runs[0]["error"].startswith("Interrupted by restart")
    assert again.json()["id"] == runs[0]["id"]  # the fire still has exactly one run
    promoted = [p["to_version"] for p in ledger]
    assert len(promoted) == len(set(promoted)) == (1 if expected == "completed" else 0)
    assert sum(m["stage"] == "production" for m in models) == len(promoted)
