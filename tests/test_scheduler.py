"""Time triggers: ticks fire keyed runs that say why, pause and edits never fire by
themselves, missed ticks follow the misfire policy, and the schedule can be read ahead."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.core.db import make_engine, make_session_factory, unit_of_work
from app.core.settings import Settings
from app.core.time import utcnow
from app.main import create_app
from app.pipelines.models import Pipeline
from tests.conftest import TestClient
from tests.factories import churn_frame, pipeline_spec, write_csv

API = "/api/v1"
NAME = "retrain-customer-model"


@pytest.fixture
def fast_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"reconcile_s": 0.2})


def runs_of(client: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(f"{API}/pipelines/{NAME}/runs").json()["items"]
    return items


def wait_runs(client: Any, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = runs_of(client)
        if len(items) >= count:
            return items
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} runs after {timeout} s: {runs_of(client)}")


def backdate_anchor(settings: Settings, seconds: float) -> None:
    """As if the pipeline had been created `seconds` ago and the service was down since."""
    engine = make_engine(settings.resolved_database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        anchor = utcnow() - timedelta(seconds=seconds)
        session.execute(update(Pipeline).values(schedule_anchor_at=anchor))
    engine.dispose()


def create_offline(settings: Settings, tmp_path: Path, **overrides: Any) -> None:
    """Create the pipeline with the service down (the app is started later)."""
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    with TestClient(create_app(settings)) as client:
        assert client.post(f"{API}/pipelines", json=pipeline_spec(**overrides)).status_code == 201
        client.post(f"{API}/pipelines/{NAME}/pause")
    engine = make_engine(settings.resolved_database_url)
    with unit_of_work(make_session_factory(engine)) as session:
        session.execute(update(Pipeline).values(paused=False))
    engine.dispose()


class TestIntervalTicks:
    def test_each_tick_fires_one_keyed_run_saying_why(
        self, fast_settings: Settings, tmp_path: Path
    ) -> None:
        write_csv(tmp_path / "data" / "customers.csv", churn_frame())
        spec = pipeline_spec(triggers=[{"kind": "interval", "every_s": 1}])
        with TestClient(create_app(fast_settings)) as client:
            client.post(f"{API}/pipelines", json=spec)
            items = wait_runs(client, 3)
            client.post(f"{API}/pipelines/{NAME}/pause")
        fired = [r for r in items if r["status"] != "skipped"]
        assert all(r["trigger"]["kind"] == "interval" for r in items)
        assert fired[-1]["trigger"]["reason"].startswith("interval every 1 s")
        assert len({r["id"] for r in items}) == len(items)

    def test_ticks_while_a_run_is_active_are_recorded_as_skipped(
        self, fast_settings: Settings, tmp_path: Path
    ) -> None:
        write_csv(tmp_path / "data" / "customers.csv", churn_frame(3000))
        slow = {
            "estimator": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 400, "random_state": 0},
        }
        spec = pipeline_spec(model=slow, triggers=[{"kind": "interval", "every_s": 0.5}])
        with TestClient(create_app(fast_settings)) as client:
            client.post(f"{API}/pipelines", json=spec)
            deadline = time.monotonic() + 20
            while not any(r["status"] == "skipped" for r in runs_of(client)):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            client.post(f"{API}/pipelines/{NAME}/pause")
            skipped = next(r for r in runs_of(client) if r["status"] == "skipped")
            active = client.get(f"{API}/pipelines/{NAME}/status").json()
            for run in runs_of(client):
                if run["status"] in ("queued", "running"):
                    client.post(f"{API}/runs/{run['id']}/cancel")
        assert skipped["error"].startswith("Skipped: run ")
        assert "still active (concurrency: skip)" in skipped["error"]
        assert [step["status"] for step in skipped["steps"]] == ["skipped"] * 5
        assert active["status"] != "skipped"


class TestPauseEditResume:
    def test_paused_pipeline_never_fires_and_resume_does_not_replay(
        self, fast_settings: Settings, tmp_path: Path
    ) -> None:
        write_csv(tmp_path / "data" / "customers.csv", churn_frame())
        spec = pipeline_spec(triggers=[{"kind": "interval", "every_s": 30}])
        with TestClient(create_app(fast_settings)) as client:
            client.post(f"{API}/pipelines", json=spec)
            client.post(f"{API}/pipelines/{NAME}/pause")
        backdate_anchor(fast_settings, 600)
        with TestClient(create_app(fast_settings)) as client:
            time.sleep(1)
            assert runs_of(client) == []
            assert client.get(f"{API}/pipelines/{NAME}/status").json()["next_run_at"] is None
            client.post(f"{API}/pipelines/{NAME}/resume")
            time.sleep(1)
            assert runs_of(client) == []
            status = client.get(f"{API}/pipelines/{NAME}/status").json()
            assert status["next_run_at"] is not None

    def test_editing_the_schedule_does_not_fire(
        self, fast_settings: Settings, tmp_path: Path
    ) -> None:
        write_csv(tmp_path / "data" / "customers.csv", churn_frame())
        with TestClient(create_app(fast_settings)) as client:
            client.post(
                f"{API}/pipelines",
                json=pipeline_spec(triggers=[{"kind": "interval", "every_s": 60}]),
            )
            time.sleep(0.5)
            edited = pipeline_spec(triggers=[{"kind": "interval", "every_s": 45}])
            assert client.put(f"{API}/pipelines/{NAME}", json=edited).status_code == 200
            time.sleep(1)
            assert runs_of(client) == []


class TestMisfires:
    def test_run_once_coalesces_missed_ticks_into_one_run(
        self, fast_settings: Settings, tmp_path: Path
    ) -> None:
        create_offline(fast_settings, tmp_path, triggers=[{"kind": "interval", "every_s": 60}])
        backdate_anchor(fast_settings, 10 * 60 + 5)
        with TestClient(create_app(fast_settings)) as client:
            items = wait_runs(client, 1)
            time.sleep(0.5)
            items = runs_of(client)
        assert len(items) == 1
        assert "ran once for 10 missed ticks" in items[0]["trigger"]["reason"]
        assert items[0]["status"] != "skipped"

    def test_skip_policy_records_the_missed_ticks(
        self, fast_settings: Settings, tmp_path: Path
    ) -> None:
        create_offline(
            fast_settings, tmp_path, misfire="skip", triggers=[{"kind": "interval", "every_s": 60}]
        )
        backdate_anchor(fast_settings, 3 * 60 + 5)
        with TestClient(create_app(fast_settings)) as client:
            items = wait_runs(client, 1)
        assert items[0]["status"] == "skipped"
        assert "3 missed ticks" in items[0]["error"]
        assert "(misfire: skip)" in items[0]["error"]

    def test_run_once_beyond_the_grace_period_is_skipped(
        self, fast_settings: Settings, tmp_path: Path
    ) -> None:
        create_offline(
            fast_settings,
            tmp_path,
            misfire_grace_s=10,
            triggers=[{"kind": "interval", "every_s": 3600}],
        )
        backdate_anchor(fast_settings, 3600 + 1800)
        with TestClient(create_app(fast_settings)) as client:
            items = wait_runs(client, 1)
        assert items[0]["status"] == "skipped"
        assert "beyond misfire_grace_s 10" in items[0]["error"]


class TestScheduleEndpoint:
    def test_next_interval_ticks(self, client: Any, tmp_path: Path) -> None:
        client.post(
            f"{API}/pipelines", json=pipeline_spec(triggers=[{"kind": "interval", "every_s": 90}])
        )
        body = client.get(f"{API}/pipelines/{NAME}/schedule", params={"count": 3}).json()
        assert len(body["next_runs"]) == 3
        assert body["paused"] is False
        assert all(t.endswith("+00:00") for t in body["next_runs"])

    @pytest.mark.parametrize("count", [0, 101, -1])
    def test_count_out_of_range_is_422(self, client: Any, count: int) -> None:
        client.post(f"{API}/pipelines", json=pipeline_spec())
        response = client.get(f"{API}/pipelines/{NAME}/schedule", params={"count": count})
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == "query.count"

    def test_no_time_triggers_means_no_fire_times(self, client: Any) -> None:
        client.post(f"{API}/pipelines", json=pipeline_spec())
        assert client.get(f"{API}/pipelines/{NAME}/schedule").json()["next_runs"] == []


class TestRetrainBudget:
    def test_fires_past_max_runs_per_day_are_recorded_as_skipped(
        self, fast_settings: Settings
    ) -> None:
        spec = {
            "name": NAME,
            "source": {"kind": "sklearn", "dataset": "iris"},
            "target": "target",
            "model": {"estimator": "sklearn.tree.DecisionTreeClassifier"},
            "evaluation": {"metric": "accuracy", "min_improvement": -1},
            "triggers": [{"kind": "interval", "every_s": 0.4}],
            "max_runs_per_day": 2,
        }
        with TestClient(create_app(fast_settings)) as client:
            client.post(f"{API}/pipelines", json=spec)
            # Ticks that come while a run is active are skipped for concurrency; wait (however
            # long the two runs take) until a tick is skipped for the budget.
            deadline = time.monotonic() + 60
            while not any("budget" in (r["error"] or "") for r in runs_of(client)):
                assert time.monotonic() < deadline, runs_of(client)
                time.sleep(0.05)
            time.sleep(1)  # more ticks: all of them skipped
            client.post(f"{API}/pipelines/{NAME}/pause")
            items = runs_of(client)
        ran = [r for r in items if r["status"] != "skipped"]
        budget = [r for r in items if r["status"] == "skipped" and "budget" in r["error"]]
        assert len(ran) == 2
        assert budget, items
        assert budget[0]["error"] == (
            "Skipped: retrain budget spent (2 automatic runs in the last 24 h, max_runs_per_day 2)"
        )
