"""Metric threshold triggers: observations are stored stamped with the production version and
judged in the request that posts them; a breach fires one run with the numbers in its reason,
unless the pipeline is paused, a run is in flight, or the trigger is cooling down."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.core.db import unit_of_work
from app.core.time import set_clock, utcnow
from app.monitoring.models import MetricObservation
from app.pipelines import service as pipelines
from app.runs import service as runs
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
NAME = "retrain-customer-model"
BASE = f"{API}/pipelines/{NAME}"
LOW_ACCURACY = {
    "kind": "metric",
    "metric": "accuracy",
    "operator": "<",
    "threshold": 0.85,
    "aggregate": "mean",
    "window": 50,
    "min_observations": 3,
}


def metric(**changes: Any) -> dict[str, Any]:
    return {**LOW_ACCURACY, **changes}


def create(client: Any, tmp_path: Path, *triggers: dict[str, Any], **overrides: Any) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    spec = pipeline_spec(triggers=list(triggers), **overrides)
    response = client.post(f"{API}/pipelines", json=spec)
    assert response.status_code == 201, response.text


def run_once(client: Any) -> dict[str, Any]:
    response = client.post(f"{BASE}/runs")
    assert response.status_code == 202, response.text
    run = wait_for_run(client, response.json()["id"])
    assert run["status"] in ("completed", "awaiting_approval"), run
    return run


def observations(*values: float, name: str = "accuracy", **extra: Any) -> dict[str, Any]:
    return {"observations": [{"metric": name, "value": value, **extra} for value in values]}


def post(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"{BASE}/metrics", json=body)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


def only_evaluation(answer: dict[str, Any]) -> dict[str, Any]:
    assert len(answer["evaluations"]) == 1, answer
    evaluation: dict[str, Any] = answer["evaluations"][0]
    return evaluation


def stored(client: Any) -> list[MetricObservation]:
    with unit_of_work(client.app.state.services.factory) as session:
        return list(session.scalars(select(MetricObservation).order_by(MetricObservation.id)))


def run_count(client: Any) -> int:
    total: int = client.get(f"{BASE}/runs").json()["total"]
    return total


@pytest.fixture
def later() -> Iterator[Any]:
    """Move the one clock forward (restored afterwards)."""

    def move(by: timedelta) -> None:
        set_clock(lambda: datetime.now(UTC) + by)

    yield move
    set_clock(None)


class TestIngestion:
    def test_batch_is_stored_stamped_with_the_production_version(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path)
        body = {
            "observations": [
                {"metric": "accuracy", "value": 0.81, "observed_at": "2024-06-01T10:00:00"},
                {"metric": "accuracy", "value": 0.8, "observed_at": "2024-06-01T12:00:00+02:00"},
                {"metric": "latency_ms", "value": 12},
            ]
        }
        assert post(client, body) == {"accepted": 3, "fired": [], "evaluations": []}
        run_once(client)
        assert post(client, observations(0.9))["accepted"] == 1

        rows = stored(client)
        assert [row.model_version for row in rows] == [None, None, None, 1]
        # Both 2024 timestamps are 10:00 UTC (naive means UTC); within a post, ids follow time.
        assert [row.observed_at for row in rows[:2]] == [datetime(2024, 6, 1, 10, tzinfo=UTC)] * 2
        assert [row.metric for row in rows] == ["accuracy", "accuracy", "latency_ms", "accuracy"]
        assert rows[2].observed_at - rows[2].received_at == timedelta(0)

    def test_unknown_pipeline_is_404(self, client: Any) -> None:
        response = client.post(f"{API}/pipelines/nope/metrics", json=observations(0.5))
        assert response.status_code == 404
        assert response.json()["detail"] == "Pipeline nope does not exist"

    @pytest.mark.parametrize(
        ("raw", "loc"),
        [
            ('{"observations": [{"metric": "accuracy", "value": NaN}]}', "value"),
            ('{"observations": [{"metric": "accuracy", "value": Infinity}]}', "value"),
            ('{"observations": [{"metric": "accuracy", "value": -1e999}]}', "value"),
            ('{"observations": [{"metric": "accuracy", "value": "0.8"}]}', "value"),
            ('{"observations": [{"metric": "accuracy", "value": 0.8, "unit": "%"}]}', "unit"),
            ('{"observations": [{"metric": "", "value": 0.8}]}', "metric"),
            ('{"observations": [{"metric": "accuracy", "value": 0.8, "observed_at": "soon"}]}',
             "observed_at"),
        ],
    )  # fmt: skip
    def test_bad_observation_is_422_naming_the_field(
        self, client: Any, tmp_path: Path, raw: str, loc: str
    ) -> None:
        create(client, tmp_path)
        response = client.post(
            f"{BASE}/metrics", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422, response.text
        problem = response.json()
        assert problem["errors"][0]["loc"] == f"body.observations.0.{loc}"
        assert problem["detail"].startswith(f"body.observations.0.{loc}: ")
        assert stored(client) == []

    @pytest.mark.parametrize("count", [0, 10_001])
    def test_batch_size_is_1_to_10000(self, client: Any, tmp_path: Path, count: int) -> None:
        create(client, tmp_path)
        response = client.post(f"{BASE}/metrics", json=observations(*[0.5] * count))
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == "body.observations"


class TestBreach:
    def test_breach_fires_a_run_within_the_request(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, metric())
        run_once(client)
        answer = post(client, observations(0.7, 0.8, 0.75))
        reason = "metric accuracy mean 0.750 < 0.85 over 3 observations (model v1)"
        assert answer["accepted"] == 3
        assert len(answer["fired"]) == 1
        evaluation = only_evaluation(answer)
        assert len(evaluation.pop("trigger")) == 8
        assert evaluation == {
            "metric": "accuracy",
            "aggregate": "mean",
            "value": pytest.approx(0.75),
            "observations": 3,
            "breached": True,
            "reason": reason,
        }
        run = client.get(f"{API}/runs/{answer['fired'][0]}").json()
        assert (run["trigger"]["kind"], run["trigger"]["reason"]) == ("metric", reason)
        assert wait_for_run(client, run["id"])["status"] == "completed"

    def test_below_min_observations_does_not_fire(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, metric(min_observations=5))
        run_once(client)
        evaluation = only_evaluation(post(client, observations(0.1, 0.1, 0.1, 0.1)))
        assert evaluation["breached"] is False
        assert evaluation["reason"] == (
            "metric accuracy: 4 observations (model v1), min_observations 5"
        )
        assert run_count(client) == 1

    def test_healthy_metric_does_not_fire(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, metric())
        answer = post(client, observations(0.9, 0.92, 0.88))
        assert answer["fired"] == []
        assert only_evaluation(answer)["reason"] == (
            "metric accuracy mean 0.900 not < 0.85 over 3 observations (no production model)"
        )

    def test_only_triggers_on_the_posted_metric_are_judged(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path, metric(metric="f1"))
        assert post(client, observations(0.1, 0.1, 0.1))["evaluations"] == []
        assert run_count(client) == 0

    def test_operators_and_aggregates(self, client: Any, tmp_path: Path) -> None:
        expected = [  # mean 0.75, min 0.6, max 0.9, last 0.75
            (metric(aggregate="mean", operator="<", threshold=0.8), True),
            (metric(aggregate="mean", operator=">=", threshold=0.8), False),
            (metric(aggregate="min", operator="<=", threshold=0.6), True),
            (metric(aggregate="min", operator="<", threshold=0.6), False),
            (metric(aggregate="max", operator=">", threshold=0.9), False),
            (metric(aggregate="max", operator=">=", threshold=0.9), True),
            (metric(aggregate="last", operator="<", threshold=0.75), False),
            (metric(aggregate="last", operator=">=", threshold=0.75), True),
            (metric(aggregate="last", operator=">", threshold=0.7), True),
            (metric(aggregate="last", operator="<=", threshold=0.7), False),
        ]
        create(client, tmp_path, *(trigger for trigger, _ in expected))
        answer = post(client, observations(0.9, 0.6, 0.75))
        evaluations = answer["evaluations"]
        assert [e["breached"] for e in evaluations] == [breached for _, breached in expected]
        assert [(e["aggregate"], e["value"]) for e in evaluations[::2]] == [
            ("mean", pytest.approx(0.75)),
            ("min", 0.6),
            ("max", 0.9),
            ("last", 0.75),
            ("last", 0.75),
        ]
        # The first breach fires; the others see its run in flight.
        [fired] = answer["fired"]
        assert evaluations[2]["reason"] == (
            "metric accuracy min 0.600 <= 0.6 over 3 observations (no production model); "
            f"not fired: run {fired} is still active"
        )
        assert wait_for_run(client, fired)["status"] == "completed"


class TestHysteresis:
    def test_cooldown_suppresses_a_second_fire(
        self, client: Any, tmp_path: Path, later: Any
    ) -> None:
        create(client, tmp_path, metric(cooldown_s=3600))
        run_once(client)
        [first] = post(client, observations(0.7, 0.7, 0.7))["fired"]
        assert wait_for_run(client, first)["status"] == "completed"  # v2: ties v1, promoted

        answer = post(client, observations(0.7, 0.7, 0.7))
        assert answer["fired"] == []
        reason = only_evaluation(answer)["reason"]
        assert reason.startswith(
            "metric accuracy mean 0.700 < 0.85 over 3 observations (model v2); "
            f"not fired: cooldown: run {first} fired "
        )
        assert reason.endswith(" s ago (cooldown_s 3600)")

        later(timedelta(hours=1, seconds=1))
        [second] = post(client, observations(0.7))["fired"]
        assert wait_for_run(client, second)["status"] == "completed"

    def test_active_run_suppresses(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, metric())
        run_once(client)
        with unit_of_work(client.app.state.services.factory) as session:
            pipeline = pipelines.get(session=session, name=NAME)
            # Queued and never dispatched: it holds the active slot for as long as we need.
            held = runs.queued_run(pipeline.id, "active", runs.Fire("manual", "manual"))
            runs.add_run(session, held)
        answer = post(client, observations(0.5, 0.5, 0.5))
        assert answer["fired"] == []
        assert only_evaluation(answer)["reason"].endswith(
            f"(model v1); not fired: run {held.id} is still active"
        )
        assert client.post(f"{API}/runs/{held.id}/cancel").status_code == 202
        assert run_count(client) == 2

    def test_concurrent_breaches_all_succeed_while_a_run_is_active(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path, metric(min_observations=1, window=1))
        with unit_of_work(client.app.state.services.factory) as session:
            pipeline = pipelines.get(session=session, name=NAME)
            held = runs.queued_run(pipeline.id, "active", runs.Fire("manual", "manual"))
            runs.add_run(session, held)
        # Each post stores its observation (a key share lock on the pipeline's row, for the
        # foreign key) before it locks the row to judge its breach: that lock must not
        # conflict with the key share locks of the other posts, or two of them deadlock.
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(client, observations(0.5)), range(24)))
        assert {answer["fired"] == [] for answer in answers} == {True}
        assert len(stored(client)) == 24
        assert run_count(client) == 1

    def test_observations_of_an_older_version_stop_counting(
        self, client: Any, tmp_path: Path
    ) -> None:
        manual = {"mode": "manual", "target": {"kind": "builtin"}}
        create(client, tmp_path, metric(), deployment=manual)
        run_once(client)
        assert client.post(f"{BASE}/models/1/promote").status_code == 200
        evaluation = only_evaluation(post(client, observations(0.5, 0.5)))
        assert evaluation["observations"] == 2

        run_once(client)
        assert client.post(f"{BASE}/models/2/promote").status_code == 200
        evaluation = only_evaluation(post(client, observations(0.5)))
        assert (evaluation["observations"], evaluation["breached"]) == (1, False)
        assert evaluation["reason"] == (
            "metric accuracy: 1 observation (model v2), min_observations 3"
        )

        answer = post(client, observations(0.6, 0.7))
        assert only_evaluation(answer)["reason"] == (
            "metric accuracy mean 0.600 < 0.85 over 3 observations (model v2)"
        )
        [fired] = answer["fired"]
        assert wait_for_run(client, fired)["status"] == "awaiting_approval"

    def test_window_s_counts_only_recent_observations(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, metric(window_s=600, min_observations=2))
        run_once(client)
        hour_ago = (utcnow() - timedelta(hours=1)).isoformat()
        answer = post(client, observations(0.1, 0.1, observed_at=hour_ago))
        assert only_evaluation(answer)["observations"] == 0

        assert only_evaluation(post(client, observations(0.9)))["observations"] == 1
        answer = post(client, observations(0.7))
        assert only_evaluation(answer)["reason"] == (
            "metric accuracy mean 0.800 < 0.85 over 2 observations (model v1)"
        )
        [fired] = answer["fired"]
        wait_for_run(client, fired)

    def test_last_in_a_time_window_is_the_newest_observation(
        self, client: Any, tmp_path: Path
    ) -> None:
        create(client, tmp_path, metric(window_s=600, aggregate="last", min_observations=1))
        run_once(client)
        evaluation = only_evaluation(post(client, observations(0.7, 0.9)))
        assert (evaluation["value"], evaluation["observations"]) == (0.9, 2)

        answer = post(client, observations(0.6))
        evaluation = only_evaluation(answer)
        assert (evaluation["value"], evaluation["observations"]) == (0.6, 3)
        [fired] = answer["fired"]
        wait_for_run(client, fired)

    def test_window_counts_the_last_n(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, metric(window=2, min_observations=2))
        answer = post(client, observations(0.1, 0.9, 0.9))
        assert only_evaluation(answer)["value"] == pytest.approx(0.9)
        assert answer["fired"] == []

    def test_paused_pipeline_stores_but_never_fires(self, client: Any, tmp_path: Path) -> None:
        create(client, tmp_path, metric())
        run_once(client)
        assert client.post(f"{BASE}/pause").status_code == 200
        answer = post(client, observations(0.5, 0.5, 0.5))
        assert answer["accepted"] == 3
        assert answer["fired"] == []
        evaluation = only_evaluation(answer)
        assert evaluation["breached"] is True
        assert evaluation["reason"].endswith("(model v1); not fired: pipeline is paused")
        assert len(stored(client)) == 3
        assert run_count(client) == 1

        # What was observed while paused still counts once the pipeline resumes.
        assert client.post(f"{BASE}/resume").status_code == 200
        [fired] = post(client, observations(0.5))["fired"]
        assert client.get(f"{API}/runs/{fired}").json()["trigger"]["reason"] == (
            "metric accuracy mean 0.500 < 0.85 over 4 observations (model v1)"
        )
        wait_for_run(client, fired)
