"""SIGTERM: the service stops taking triggers, lets running runs finish within the grace
period, and marks the ones that could not as interrupted before it exits."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx

from tests.factories import churn_frame, pipeline_spec, write_csv
from tests.server import Server

NAME = "retrain-customer-model"
SLOW = {
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 3000, "n_jobs": 1, "random_state": 0},
}


def training(api: httpx.Client, run_id: int) -> bool:
    steps = api.get(f"/runs/{run_id}").json()["steps"]
    return any(s["name"] == "train" and s["status"] == "running" for s in steps)


def wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def terminate(server: Server) -> float:
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)
    return time.monotonic() - started


def test_run_past_the_grace_period_is_interrupted(tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame(3000))
    server = Server(tmp_path, MLOPS_SHUTDOWN_GRACE_S="1").start()
    with server.api() as api:
        api.post("/pipelines", json=pipeline_spec(model=SLOW))
        run_id = api.post(f"/pipelines/{NAME}/runs").json()["id"]
        wait_for(lambda: training(api, run_id))
    took = terminate(server)
    # uvicorn re-raises SIGTERM once its own shutdown (and ours) has completed.
    assert "Application shutdown complete" in server.log.read_text()
    assert took < 15, f"shutdown took {took:.1f} s"
    server.start()
    try:
        with server.api() as api:
            run = api.get(f"/runs/{run_id}").json()
    finally:
        server.kill()
    assert run["status"] == "failed"
    assert run["error"].startswith("Interrupted by shutdown")


def test_run_within_the_grace_period_completes(tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame(3000))
    medium = {**SLOW, "params": {**SLOW["params"], "n_estimators": 150}}  # type: ignore[dict-item]
    server = Server(tmp_path, MLOPS_SHUTDOWN_GRACE_S="60").start()
    with server.api() as api:
        api.post("/pipelines", json=pipeline_spec(model=medium))
        run_id = api.post(f"/pipelines/{NAME}/runs").json()["id"]
        wait_for(lambda: training(api, run_id))
    terminate(server)
    server.start()
    try:
        with server.api() as api:
            run = api.get(f"/runs/{run_id}").json()
    finally:
        server.kill()
    assert run["status"] == "completed", run
