"""Logs operators can search: with MLOPS_LOG_FORMAT=json a real server writes one JSON object a
line, uvicorn's access lines included, each carrying the request id, and a run's lines its
run id and pipeline; X-Request-ID is accepted when safe, else made, and always echoed."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core import logs
from tests.server import Server

SPEC = {
    "name": "logged",
    "source": {"kind": "sklearn", "dataset": "iris"},
    "target": "target",
    "model": {"estimator": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
    "evaluation": {"metric": "accuracy", "min_score": 0.5},
}
HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("logs"), MLOPS_LOG_FORMAT="json")
    # The installed script, as operators run it (`python -m` makes the training processes'
    # forkserver print a runpy warning of its own, outside any logging).
    running.command = [str(Path(sys.executable).with_name("mlops"))]
    running.start()
    try:
        yield running
    finally:
        running.stop()


def records(server: Server) -> list[dict[str, Any]]:
    """Every line the server wrote, each parsed as JSON (a line that is not JSON fails)."""
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def wait_for(server: Server, match: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in records(server):
            if match.items() <= record.items():
                return record
        time.sleep(0.1)
    raise AssertionError(f"no log line with {match}")


def test_every_line_is_json_with_the_base_fields(server: Server) -> None:
    with server.api() as api:
        api.get("/pipelines").raise_for_status()
    found = records(server)
    assert found
    for record in found:
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), record
    assert any(r["logger"] == "uvicorn.error" for r in found)


def test_access_line_carries_the_callers_request_id(server: Server) -> None:
    with server.api() as api:
        response = api.get("/pipelines", headers={"X-Request-ID": "trace-42.abc"})
    assert response.headers["X-Request-ID"] == "trace-42.abc"
    access = wait_for(server, {"logger": "uvicorn.access", "request_id": "trace-42.abc"})
    assert (access["method"], access["path"], access["status_code"]) == (
        "GET",
        "/api/v1/pipelines",
        200,
    )
    assert access["level"] == "INFO"
    assert "GET /api/v1/pipelines" in access["message"]


@pytest.mark.parametrize("unsafe", ["has space", "x" * 129, "new\\nline", "-leading-dash"])
def test_an_unsafe_request_id_is_replaced(server: Server, unsafe: str) -> None:
    response = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": unsafe})
    made = response.headers["X-Request-ID"]
    assert HEX_ID.fullmatch(made), made
    wait_for(server, {"logger": "uvicorn.access", "request_id": made})


def test_errors_and_401s_echo_the_request_id(server: Server) -> None:
    refused = httpx.get(f"{server.url}/api/v1/pipelines", headers={"X-Request-ID": "no-key-1"})
    assert (refused.status_code, refused.headers["X-Request-ID"]) == (401, "no-key-1")
    with server.api() as api:
        missing = api.get("/pipelines/nope", headers={"X-Request-ID": "missing-1"})
        made = api.get("/pipelines/nope")
    assert (missing.status_code, missing.headers["X-Request-ID"]) == (404, "missing-1")
    assert HEX_ID.fullmatch(made.headers["X-Request-ID"])
    wait_for(server, {"logger": "uvicorn.access", "request_id": "no-key-1", "status_code": 401})


def test_a_runs_lines_carry_its_id_and_pipeline(server: Server) -> None:
    with server.api() as api:
        api.post("/pipelines", json=SPEC).raise_for_status()
        run = api.post("/pipelines/logged/runs", headers={"X-Request-ID": "trigger-1"}).json()
    started = wait_for(server, {"run_id": run["id"], "message": f"run {run['id']} started"})
    assert started["pipeline"] == "logged"
    assert "request_id" not in started  # the run is not the request that queued it
    ended = wait_for(server, {"run_id": run["id"], "message": f"run {run['id']} ended completed"})
    assert (ended["pipeline"], ended["logger"]) == ("logged", "app.execution.worker")


def test_text_lines_show_the_context(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("text")
    try:
        with logs.bound(run_id=7, pipeline="churn"):
            logging.getLogger("app.test").warning("slow step")
        logging.getLogger("app.test").warning("no context")
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})
        logging.getLogger().handlers.clear()
        logging.captureWarnings(False)
    first, second = capsys.readouterr().err.splitlines()
    assert first.endswith(" WARNING app.test: slow step [run_id=7 pipeline=churn]")
    assert second.endswith(" WARNING app.test: no context")


def test_server_log_file_is_not_empty(server: Server) -> None:
    assert Path(server.log).stat().st_size > 0
