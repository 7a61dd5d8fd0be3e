"""`POST /prune` and `mlops prune`: finished runs, data batches and observations older than
the cut-off go; a run that made a model version, the versions and their artifacts stay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.core.db import make_engine
from app.core.settings import Settings
from app.core.time import utcnow
from app.monitoring.models import MetricObservation
from app.runs.models import Run
from tests.factories import pipeline_spec, wait_for_run

DAY = 86_400


def age_everything(settings: Settings, days: int) -> None:
    """Move every run and observation `days` into the past, as time would."""
    past = utcnow() - timedelta(days=days)
    engine = make_engine(settings.resolved_database_url)
    try:
        with engine.begin() as connection:
            connection.execute(update(Run).values(created_at=past, finished_at=past))
            connection.execute(update(MetricObservation).values(received_at=past))
    finally:
        engine.dispose()


def finished_run(client: Any, name: str) -> dict[str, Any]:
    return wait_for_run(client, client.post(f"/api/v1/pipelines/{name}/runs").json()["id"])


@pytest.fixture
def history(client: Any, settings: Settings) -> dict[str, Any]:
    """A pipeline whose first run made production v1 and whose second failed; 3 observations."""
    iris = {"kind": "sklearn", "dataset": "iris"}
    spec = pipeline_spec("kept", source=iris, target="target", validation={"min_rows": 10})
    client.post("/api/v1/pipelines", json=spec).raise_for_status()
    made = finished_run(client, "kept")
    broken = {**spec, "source": {"kind": "csv", "path": "nowhere.csv"}}
    client.put("/api/v1/pipelines/kept", json=broken).raise_for_status()
    failed = finished_run(client, "kept")
    assert (made["status"], failed["status"]) == ("completed", "failed")
    observations = [{"metric": "accuracy", "value": 0.9}] * 3
    client.post("/api/v1/pipelines/kept/metrics", json={"observations": observations})
    age_everything(settings, days=10)
    return {"made": made, "failed": failed}


def test_old_runs_and_observations_go_the_production_run_stays(
    client: Any, history: dict[str, Any]
) -> None:
    pruned = client.post("/api/v1/prune", json={"older_than_s": 7 * DAY})
    assert pruned.status_code == 200, pruned.text
    assert {k: v for k, v in pruned.json().items() if k != "before"} == {
        "runs": 1,
        "data_batches": 0,
        "observations": 3,
    }
    assert client.get(f"/api/v1/runs/{history['failed']['id']}").status_code == 404
    assert client.get(f"/api/v1/runs/{history['made']['id']}").status_code == 200
    assert client.get("/api/v1/pipelines/kept/models/1/artifact").status_code == 200
    assert client.get("/api/v1/pipelines/kept/status").json()["production_version"] == 1


def test_newer_than_the_cut_off_stays(client: Any, history: dict[str, Any]) -> None:
    pruned = client.post("/api/v1/prune", json={"older_than_s": 30 * DAY}).json()
    assert (pruned["runs"], pruned["observations"]) == (0, 0)
    assert client.get(f"/api/v1/runs/{history['failed']['id']}").status_code == 200


def test_less_than_a_day_is_refused(client: Any) -> None:
    refused = client.post("/api/v1/prune", json={"older_than_s": 3600})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == "body.older_than_s"
