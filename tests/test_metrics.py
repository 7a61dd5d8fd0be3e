"""/metrics: run series aggregated in SQL and rolled up as runs end (exact before, during and
after the roll-up), the process's standard series, and HTTP requests by route template."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from app.core.db import unit_of_work
from app.core.time import utcnow
from app.pipelines.models import Pipeline
from app.runs import rollup
from app.runs.models import Run, RunRollup
from tests.factories import pipeline_spec

NAME = "retrain-customer-model"
# (status, trigger kind, seconds from start to end; None: not ended)
RUNS: list[tuple[str, str, float | None]] = [
    ("completed", "manual", 0.5),
    ("completed", "manual", 3.0),
    ("completed", "cron", 100.0),
    ("failed", "cron", 20_000.0),
    ("skipped", "cron", None),
    ("running", "manual", None),
    ("queued", "manual", None),
]


def _add_runs(client: Any, runs: list[tuple[str, str, float | None]]) -> None:
    factory = client.app.state.services.factory
    with unit_of_work(factory) as session:
        pipeline_id = session.scalar(select(Pipeline.id).where(Pipeline.name == NAME))
        end = utcnow()
        for status, kind, seconds in runs:
            started = (
                None
                if seconds is None and status != "running"
                else end - timedelta(seconds=seconds or 1)
            )
            session.add(
                Run(
                    pipeline_id=pipeline_id,
                    status=status,
                    trigger_kind=kind,
                    trigger_reason=kind,
                    metrics={},
                    started_at=started,
                    finished_at=end if seconds is not None else None,
                )
            )


def _samples(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name.startswith("mlops_run")
        for sample in family.samples
    }


def _runs(samples: dict[Any, float], status: str, trigger: str) -> float:
    labels = (("pipeline", NAME), ("status", status), ("trigger", trigger))
    return samples[("mlops_runs_total", labels)]


def _bucket(samples: dict[Any, float], le: str) -> float:
    labels = (("le", le), ("pipeline", NAME))
    return samples[("mlops_run_duration_seconds_bucket", labels)]


def _created(client: Any) -> None:
    assert client.post("/api/v1/pipelines", json=pipeline_spec()).status_code == 201


def test_run_series_are_exact_before_and_after_the_roll_up(client: Any) -> None:
    _created(client)
    _add_runs(client, RUNS)
    before = _samples(client)
    assert _runs(before, "completed", "manual") == 2
    assert _runs(before, "failed", "cron") == 1
    assert _runs(before, "queued", "manual") == 1
    assert [_bucket(before, le) for le in ("1.0", "5.0", "300.0", "14400.0", "+Inf")] == [
        1,
        2,
        3,
        3,
        4,
    ]
    pipeline = (("pipeline", NAME),)
    assert before[("mlops_run_duration_seconds_sum", pipeline)] == pytest.approx(20_103.5, abs=0.01)

    # Only terminal runs are rolled up: the running and the queued one stay live.
    assert rollup.roll_up(client.app.state.services.factory) == 5
    assert _samples(client) == before
    assert rollup.roll_up(client.app.state.services.factory) == 0

    _add_runs(client, [("completed", "manual", 2.0)])
    after = _samples(client)
    assert _runs(after, "completed", "manual") == 3  # two rolled up, one live
    assert _bucket(after, "5.0") == 3


def test_small_batches_count_every_run_once(client: Any) -> None:
    _created(client)
    _add_runs(client, RUNS * 3)
    factory = client.app.state.services.factory
    assert rollup.roll_up(factory, batch=2) == 15
    with unit_of_work(factory) as session:
        assert session.scalar(select(func.sum(RunRollup.runs))) == 15
        uncounted = session.scalar(select(func.count()).where(Run.rolled_up.is_(False)))
        assert uncounted == 6  # the running and queued ones


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_large_catch_up_vacuums_and_analyzes_runs_on_postgresql(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Otherwise scrapes read a dead index entry per counted run, or scan every run, until
    autovacuum visits the table."""
    factory = client.app.state.services.factory
    monkeypatch.setattr(rollup, "ANALYZE_AFTER", 10)
    monkeypatch.setattr(rollup, "_since_analyze", [0])
    _created(client)
    _add_runs(client, RUNS * 3)
    counts = text(
        "SELECT vacuum_count, analyze_count FROM pg_stat_user_tables WHERE relname = 'runs'"
    )
    with unit_of_work(factory) as session:
        before = session.execute(counts).one()
    assert rollup.roll_up(factory, batch=4) == 15
    for _ in range(50):  # the statistics collector reports with a short delay
        with unit_of_work(factory) as session:
            after = session.execute(counts).one()
        if after != before:
            break
        time.sleep(0.1)
    assert after.vacuum_count > before.vacuum_count and after.analyze_count > before.analyze_count


def test_concurrent_roll_ups_never_count_a_run_twice(client: Any) -> None:
    _created(client)
    _add_runs(client, RUNS * 40)
    factory = client.app.state.services.factory
    errors: list[BaseException] = []

    def job() -> None:
        try:
            rollup.roll_up(factory, batch=7)  # a lost race is undone and logged, not raised
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    rollup.roll_up(factory, batch=7)
    with unit_of_work(factory) as session:
        assert session.scalar(select(func.sum(RunRollup.runs))) == 5 * 40


def test_deleting_a_pipeline_drops_its_series(client: Any) -> None:
    _created(client)
    _add_runs(client, RUNS[:4])
    rollup.roll_up(client.app.state.services.factory)
    assert client.delete(f"/api/v1/pipelines/{NAME}").status_code == 204
    assert not [key for key in _samples(client) if key[0] == "mlops_runs_total"]


def test_process_and_platform_series(client: Any) -> None:
    text = client.get("/metrics").text
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"):
        assert f"\n{name}" in text


def test_http_series_are_labelled_by_route_template(client: Any) -> None:
    _created(client)
    assert client.get(f"/api/v1/pipelines/{NAME}/status").status_code == 200
    assert client.get("/api/v1/runs/987654").status_code == 404
    assert client.get("/no/such/path/123").status_code == 404
    anonymous = client.get("/api/v1/runs/55", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    text = client.get("/metrics").text
    counts = {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "mlops_http_requests"
        for s in family.samples
        if s.name == "mlops_http_requests_total" and s.labels["method"] == "GET"
    }
    assert counts[("/api/v1/pipelines/{name}/status", "200")] == 1
    assert counts[("/api/v1/runs/{run_id}", "404")] == 1
    assert counts[("/api/v1/runs/{run_id}", "401")] == 1  # refused before routing
    assert counts[("<unmatched>", "404")] == 1
    assert "987654" not in text and "/no/such/path" not in text
    assert (
        'mlops_http_request_duration_seconds_count{method="GET",'
        'route="/api/v1/pipelines/{name}/status"} 1.0' in text
    )
