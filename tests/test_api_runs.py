"""Runs API: manual triggers walk load_data -> validate -> train -> evaluate -> deploy, the
gates reject with plain reasons, errors are actionable, and concurrency, cancel, timeout,
idempotency and retries behave as promised."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.settings import Settings
from app.main import create_app
from tests.conftest import TestClient
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
STEPS = ("load_data", "validate", "train", "evaluate", "deploy")
NAME = "retrain-customer-model"
SLOW_MODEL = {
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 400, "n_jobs": 1, "random_state": 0},
}
# Minutes of fitting: only a kill ends it in time.
ENDLESS_MODEL = {
    "estimator": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 100_000, "n_jobs": 1, "random_state": 0},
}


def create(client: Any, tmp_path: Path, rows: int = 300, **overrides: Any) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame(rows))
    response = client.post(f"{API}/pipelines", json=pipeline_spec(**overrides))
    assert response.status_code == 201, response.text


def trigger(client: Any, name: str = NAME, **kwargs: Any) -> dict[str, Any]:
    response = client.post(f"{API}/pipelines/{name}/runs", **kwargs)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(client: Any, run_id: int, predicate: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = client.get(f"{API}/runs/{run_id}").json()
        if predicate(run):
            return run
        time.sleep(0.02)
    raise AssertionError(f"condition not reached for run {run_id}")


def step_running(name: str) -> Any:
    return lambda run: any(s["name"] == name and s["status"] == "running" for s in run["steps"])


class TestManualTrigger:
    def test_run_walks_every_step_and_deploys(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        queued = trigger(client)
        assert queued["status"] == "queued"
        assert queued["trigger"] == {"kind": "manual", "reason": "manual"}
        assert [(s["name"], s["status"]) for s in queued["steps"]] == [
            (name, "pending") for name in STEPS
        ]
        run = wait_for_run(client, queued["id"])
        assert run["status"] == "completed", run
        assert [s["name"] for s in run["steps"]] == list(STEPS)
        assert all(s["status"] == "completed" and s["finished_at"] for s in run["steps"])
        assert run["steps"][0]["detail"].startswith("300 rows x 4 columns from csv")
        assert run["model_version"] == 1
        assert run["metrics"]["metric"] == "accuracy"
        assert run["metrics"]["candidate"] >= 0.6
        assert run["started_at"].endswith("+00:00")
        status = client.get(f"{API}/pipelines/{NAME}/status").json()
        assert status["status"] == "completed"
        assert status["production_version"] == 1
        assert status["last_run_at"] == run["started_at"]

    def test_reason_from_body(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        run = trigger(client, json={"reason": "new labels arrived"})
        assert run["trigger"]["reason"] == "manual: new labels arrived"

    def test_idempotency_key_returns_the_same_run(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        first = trigger(client, headers={"Idempotency-Key": "abc-123"})
        wait_for_run(client, first["id"])
        second = trigger(client, headers={"Idempotency-Key": "abc-123"})
        assert second["id"] == first["id"]
        assert client.get(f"{API}/pipelines/{NAME}/runs").json()["total"] == 1

    def test_unknown_pipeline_is_404(self, client: Any) -> None:
        response = client.post(f"{API}/pipelines/nope/runs")
        assert response.status_code == 404
        assert response.json()["detail"] == "Pipeline nope does not exist"

    def test_history_is_newest_first_and_paginated(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        ids = [wait_for_run(client, trigger(client)["id"])["id"] for _ in range(3)]
        page = client.get(f"{API}/pipelines/{NAME}/runs", params={"limit": 2}).json()
        assert [r["id"] for r in page["items"]] == ids[::-1][:2]
        assert page["total"] == 3

    def test_unknown_run_is_404(self, client: Any) -> None:
        assert client.get(f"{API}/runs/999").json()["detail"] == "Run 999 does not exist"


class TestFailuresAndGates:
    def test_missing_csv_fails_with_the_path(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, source={"kind": "csv", "path": "data/missing.csv"})
        run = wait_for_run(client, trigger(client)["id"])
        assert run["status"] == "failed"
        assert run["error"] == "Data source not found: data/missing.csv"
        assert run["steps"][0]["status"] == "failed"
        assert {s["status"] for s in run["steps"][1:]} == {"skipped"}
        status = client.get(f"{API}/pipelines/{NAME}/status").json()
        assert (status["status"], status["error"]) == ("failed", run["error"])

    def test_too_few_rows_is_rejected(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, validation={"min_rows": 10_000})
        run = wait_for_run(client, trigger(client)["id"])
        assert run["status"] == "rejected"
        assert run["error"] == "Data validation failed: 300 rows < min_rows 10000"
        assert run["steps"][1]["status"] == "rejected"
        assert client.get(f"{API}/pipelines/{NAME}/models").json() == []

    def test_empty_source_is_rejected_plainly(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path)
        write_csv(tmp_path / "data" / "customers.csv", churn_frame().iloc[:0])
        run = wait_for_run(client, trigger(client)["id"])
        assert run["status"] == "rejected"
        assert "no rows" in run["error"]

    def test_worse_candidate_is_rejected_and_production_kept(
        self, client: Any, tmp_path: Path
    ) -> None:
        # min_skill off: this is about the comparison with production, which a model that
        # ignores the features would otherwise never reach (tests/test_gate.py covers that).
        evaluation = {"metric": "accuracy", "min_score": 0.0, "min_skill": None}
        create(client, tmp_path, evaluation=evaluation)
        first = wait_for_run(client, trigger(client)["id"])
        assert first["status"] == "completed"
        # A model that ignores the features: clearly worse on the very same holdout.
        worse = {"estimator": "sklearn.dummy.DummyClassifier", "params": {}}
        client.put(
            f"{API}/pipelines/{NAME}", json=pipeline_spec(model=worse, evaluation=evaluation)
        )
        run = wait_for_run(client, trigger(client)["id"])
        assert run["status"] == "rejected", run
        assert run["error"].startswith("Evaluation gate: candidate accuracy")
        assert "does not beat production" in run["error"]
        assert run["metrics"]["production"] > run["metrics"]["candidate"]
        status = client.get(f"{API}/pipelines/{NAME}/status").json()
        assert status["production_version"] == 1
        versions = {
            m["version"]: m["stage"] for m in client.get(f"{API}/pipelines/{NAME}/models").json()
        }
        assert versions == {1: "production", 2: "candidate"}

    def test_below_min_score_is_rejected(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, evaluation={"metric": "accuracy", "min_score": 0.999})
        run = wait_for_run(client, trigger(client)["id"])
        assert run["status"] == "rejected"
        assert "< min_score 0.999" in run["error"]

    def test_estimator_that_cannot_fit_fails_with_its_message(
        self, client: Any, tmp_path: Path
    ) -> None:
        model = {
            "estimator": "sklearn.linear_model.LogisticRegression",
            "params": {"solver": "liblinear", "penalty": "elasticnet"},
        }
        create(client, tmp_path, model=model)
        run = wait_for_run(client, trigger(client)["id"])
        assert run["status"] == "failed"
        assert run["error"].startswith("Training failed: ")
        assert "elasticnet" in run["error"]

    def test_failed_run_is_retried_as_a_linked_attempt(self, client: Any, tmp_path: Path) -> None:
        create(
            client,
            tmp_path,
            source={"kind": "csv", "path": "data/missing.csv"},
            retries={"max_attempts": 2, "backoff_s": 0},
        )
        first = wait_for_run(client, trigger(client)["id"])
        assert first["status"] == "failed"
        deadline = time.monotonic() + 30
        while client.get(f"{API}/pipelines/{NAME}/runs").json()["total"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        retry = client.get(f"{API}/pipelines/{NAME}/runs").json()["items"][0]
        retry = wait_for_run(client, retry["id"])
        assert (retry["attempt"], retry["retry_of"], retry["status"]) == (2, first["id"], "failed")
        time.sleep(0.3)
        assert client.get(f"{API}/pipelines/{NAME}/runs").json()["total"] == 2


class TestConcurrencyCancelTimeout:
    def test_skip_refuses_a_second_run_with_409(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, rows=3000, model=SLOW_MODEL)
        first = trigger(client)
        response = client.post(f"{API}/pipelines/{NAME}/runs")
        assert response.status_code == 409
        assert response.json()["active_run_id"] == first["id"]
        assert f"run {first['id']} active" in response.json()["detail"]
        client.post(f"{API}/runs/{first['id']}/cancel")
        wait_for_run(client, first["id"])

    def test_queue_keeps_one_waiting_run(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, rows=3000, model=SLOW_MODEL, concurrency="queue")
        first = trigger(client)
        second = trigger(client)
        assert client.post(f"{API}/pipelines/{NAME}/runs").status_code == 409
        first_done = wait_for_run(client, first["id"])
        second_done = wait_for_run(client, second["id"])
        assert first_done["status"] == second_done["status"] == "completed"
        assert second_done["started_at"] >= first_done["finished_at"]

    def test_cancel_queued_run_at_once(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, rows=3000, model=SLOW_MODEL, concurrency="queue")
        first = trigger(client)
        waiting = trigger(client)
        cancelled = client.post(f"{API}/runs/{waiting['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert {s["status"] for s in cancelled["steps"]} == {"cancelled"}
        client.post(f"{API}/runs/{first['id']}/cancel")
        wait_for_run(client, first["id"])

    def test_cancel_during_training_kills_the_fit_and_never_deploys(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path, rows=3000, model=ENDLESS_MODEL)
        run = trigger(client)
        wait_until(client, run["id"], step_running("train"))
        cancelled_at = time.monotonic()
        assert client.post(f"{API}/runs/{run['id']}/cancel").status_code == 202
        done = wait_for_run(client, run["id"])
        # The fit alone would take minutes; its process is killed within about a second.
        assert time.monotonic() - cancelled_at < 15
        assert (done["status"], done["error"]) == ("cancelled", "Cancelled during step train")
        steps = {s["name"]: s["status"] for s in done["steps"]}
        assert steps["train"] == "cancelled"
        assert steps["evaluate"] == steps["deploy"] == "skipped"
        assert client.get(f"{API}/pipelines/{NAME}/status").json()["production_version"] is None
        again = client.post(f"{API}/runs/{run['id']}/cancel")
        assert again.status_code == 409

    def test_timeout_stops_the_fit(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, rows=3000, model=ENDLESS_MODEL, timeout_s=1)
        started = time.monotonic()
        done = wait_for_run(client, trigger(client)["id"])
        assert time.monotonic() - started < 15
        assert done["status"] == "failed"
        assert done["error"].startswith("Timed out: the run took")
        assert done["error"].endswith("over timeout_s 1 (stopped during step train)")
        assert client.get(f"{API}/pipelines/{NAME}/status").json()["production_version"] is None


@pytest.mark.parametrize("dataset", ["iris", "wine", "diabetes"])
def test_bundled_datasets_train(client: Any, dataset: str) -> None:
    regression = dataset == "diabetes"
    spec = pipeline_spec(
        name=f"toy-{dataset}",
        source={"kind": "sklearn", "dataset": dataset},
        target="target",
        validation={},
        model={
            "estimator": "sklearn.linear_model.Ridge"
            if regression
            else "sklearn.linear_model.LogisticRegression",
            "params": {} if regression else {"max_iter": 5000},
        },
        evaluation={"metric": "rmse" if regression else "f1", "holdout_fraction": 0.3},
    )
    assert client.post(f"{API}/pipelines", json=spec).status_code == 201
    run = wait_for_run(client, trigger(client, name=f"toy-{dataset}")["id"])
    assert run["status"] == "completed", run
    assert run["metrics"]["metric"] == ("rmse" if regression else "f1")


class TestTrainingMemoryCap:
    @pytest.fixture
    def capped(self, settings: Settings) -> Iterator[TestClient]:
        with TestClient(create_app(settings.model_copy(update={"training_memory_mb": 100}))) as c:
            yield c

    def test_a_fit_over_the_cap_fails_its_run_and_the_next_fit_is_fine(
        self, capped: TestClient, tmp_path: Path
    ) -> None:
        # A Gaussian process on 8,000 training rows wants an 8,000 x 8,000 kernel (~490 MiB).
        gaussian = {"estimator": "sklearn.gaussian_process.GaussianProcessClassifier"}
        create(capped, tmp_path, rows=10_000, model=gaussian)
        run = wait_for_run(capped, trigger(capped)["id"])
        assert run["status"] == "failed"
        assert run["error"].startswith(
            "Training failed: the fit needs more memory than MLOPS_TRAINING_MEMORY_MB allows "
            "(100 MB): Unable to allocate"
        )
        assert run["steps"][2]["status"] == "failed"
        assert capped.get(f"{API}/pipelines/{NAME}/models").json() == []
        # The cap is the fit's, not the process's for good: a small model trains as usual.
        create(capped, tmp_path, rows=10_000, name="small")
        assert wait_for_run(capped, trigger(capped, "small")["id"])["status"] == "completed"
