"""Operations endpoints: liveness, readiness, Prometheus metrics, offline Swagger UI."""

from __future__ import annotations

import os
import re
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from app.core import migrate
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import TestClient
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv
from tests.server import ADMIN_TOKEN


def test_healthz(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz_checks_database_and_scheduler(client: Any) -> None:
    body = client.get("/readyz").json()
    assert body["status"] == "ready"
    assert body["scheduler"] == "running"


def test_metrics_count_runs_and_show_production(client: Any, tmp_path: Path) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    client.post("/api/v1/pipelines", json=pipeline_spec())
    run = client.post("/api/v1/pipelines/retrain-customer-model/runs").json()
    # The thread executor records the serving process as the run's worker.
    assert wait_for_run(client, run["id"])["worker"] == f"{socket.gethostname()}:{os.getpid()}"
    text = client.get("/metrics").text
    assert (
        'mlops_runs_total{pipeline="retrain-customer-model",'
        'status="completed",trigger="manual"} 1.0' in text
    )
    assert 'mlops_production_version{pipeline="retrain-customer-model"} 1.0' in text
    assert 'mlops_run_duration_seconds_count{pipeline="retrain-customer-model"} 1.0' in text
    assert "mlops_runs_queued 0.0" in text


def test_swagger_ui_of_the_real_app_needs_no_internet(client: Any) -> None:
    page = client.get("/docs").text
    assert not re.findall(r"https?://", page)
    assert client.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 200
    schema = client.get("/openapi.json").json()
    assert "/api/v1/pipelines/{name}/runs" in schema["paths"]
    assert "PipelineSpec" in schema["components"]["schemas"]


def test_unknown_route_is_problem_json(client: Any) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_reads_do_not_wait_for_a_writer_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "mlops.db"
    migrate.upgrade(f"sqlite:///{path}")
    settings = Settings(
        database_url=f"sqlite:///{path}", data_dir=tmp_path / ".mlops", admin_token=ADMIN_TOKEN
    )
    with TestClient(create_app(settings)) as client:
        client.post("/api/v1/pipelines", json=pipeline_spec())
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            started = time.monotonic()
            assert client.get("/api/v1/pipelines/retrain-customer-model/status").status_code == 200
            assert client.get("/api/v1/pipelines").status_code == 200
            assert time.monotonic() - started < 2
        finally:
            writer.execute("ROLLBACK")
            writer.close()


def test_the_front_page_leads_to_the_dashboard(client: Any) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/ui"
