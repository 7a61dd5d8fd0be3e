"""A service killed during a run leaves no run `running` after it comes back."""

from __future__ import annotations

import time
from pathlib import Path

from tests.factories import churn_frame, pipeline_spec, write_csv
from tests.server import Server

SLOW_MODEL = {
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 2000, "n_jobs": 1, "random_state": 0},
}


def wait_for(predicate: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def test_kill_during_training_leaves_no_run_running(server: Server, tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame(3000))
    server.start()
    with server.api() as api:
        assert api.post("/pipelines", json=pipeline_spec(model=SLOW_MODEL)).status_code == 201
        run_id = api.post("/pipelines/retrain-customer-model/runs").json()["id"]
        wait_for(
            lambda: any(
                s["name"] == "train" and s["status"] == "running"
                for s in api.get(f"/runs/{run_id}").json()["steps"]
            )
        )
    server.kill()
    server.start()
    with server.api() as api:
        run = api.get(f"/runs/{run_id}").json()
        assert run["status"] == "failed"
        assert run["error"] == "Interrupted by restart: the service stopped during the run"
        assert {s["name"]: s["status"] for s in run["steps"]}["train"] == "failed"
        status = api.get("/pipelines/retrain-customer-model/status").json()
        assert status["active_run_id"] is None
        assert status["production_version"] is None
        # The pipeline is usable again at once.
        assert api.post("/pipelines/retrain-customer-model/runs").status_code == 202
