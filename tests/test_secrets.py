"""Secrets (webhook secrets, deploy-target headers, passwords and tokens in URLs) never
appear in API responses, logs or the audit log; specs show them masked, and a spec sent back
as shown keeps them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine

from app.core.settings import Settings
from tests.conftest import create_pg_database, drop_pg_database
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
HEADER = "Bearer deploy-header-secret-7f3a"
URL_PASSWORD = "url-password-91c2"
URL_TOKEN = "query-token-55d0"
SQL_PASSWORD = "sql-password-3be8"
SECRETS = (HEADER, "deploy-header-secret-7f3a", URL_PASSWORD, URL_TOKEN, SQL_PASSWORD)


@dataclass
class Target:
    url: str = ""
    status: int = 200
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def target() -> Iterator[Target]:
    """A deploy target that records the headers of each POST."""
    recorded = Target()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            recorded.headers.append(dict(self.headers))
            self.send_response(recorded.status)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    recorded.url = f"http://deployer:{URL_PASSWORD}@127.0.0.1:{port}/deploy?token={URL_TOKEN}&v=1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield recorded
    server.shutdown()
    server.server_close()


class Recorder:
    """Calls the API and keeps every response body, to be searched for secrets at the end."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.bodies: list[str] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response: httpx.Response = self.client.request(method, f"{API}{path}", **kwargs)
        self.bodies.append(f"{method} {path} -> {response.status_code}: {response.text}")
        return response

    def run(self, path: str) -> dict[str, Any]:
        response = self("POST", f"{path}/runs")
        assert response.status_code == 202, response.text
        run = wait_for_run(self.client, response.json()["id"])
        self("GET", f"/runs/{run['id']}")
        return run


def deploy_spec(target: Target) -> dict[str, Any]:
    # Not Authorization: httpx sends the URL's user info as Basic auth in that header.
    webhook = {"kind": "webhook", "url": target.url, "headers": {"X-Deploy-Token": HEADER}}
    return pipeline_spec("deploys", deployment={"mode": "auto", "target": webhook})


def test_secrets_never_leave_the_service(
    client: Any, settings: Settings, tmp_path: Path, target: Target, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    api = Recorder(client)

    created = api("POST", "/pipelines", json=deploy_spec(target))
    assert created.status_code == 201, created.text
    webhook_secret = created.json()["webhook_secret"]
    shown = created.json()["spec"]["deployment"]["target"]
    assert shown["headers"] == {"X-Deploy-Token": "***"}
    assert shown["url"] == target.url.replace(URL_PASSWORD, "***").replace(URL_TOKEN, "***")

    # A failed deploy names the target, masked; then one that is accepted.
    target.status = 403
    failed = api.run("/pipelines/deploys")
    assert failed["status"] == "failed"
    assert (
        "Deployment failed: 403 Forbidden from http://deployer:***@127.0.0.1" in (failed["error"])
    )
    target.status = 200
    # The spec as GET shows it, sent back: the stored secrets are kept.
    spec = api("GET", "/pipelines/deploys").json()["spec"]
    assert api("PUT", "/pipelines/deploys", json=spec).status_code == 200
    assert api.run("/pipelines/deploys")["status"] == "completed"
    assert target.headers[-1]["X-Deploy-Token"] == HEADER  # the real value was sent
    assert api("POST", "/pipelines/deploys/models/1/promote").status_code == 200
    assert api("POST", "/pipelines/deploys/rollback").status_code == 200

    for path in READS:
        assert api("GET", path.format(name="deploys")).status_code == 200, path
    leaks = [body for body in api.bodies[1:] if webhook_secret in body]
    leaks += [body for body in api.bodies for secret in SECRETS if secret in body]
    assert leaks == []
    assert_not_logged(caplog, (webhook_secret, *SECRETS))


READS = (
    "/pipelines",
    "/pipelines/{name}",
    "/pipelines/{name}/status",
    "/pipelines/{name}/runs",
    "/pipelines/{name}/models",
    "/pipelines/{name}/models/1",
    "/pipelines/{name}/promotions",
    "/audit",
    "/audit?action=pipeline.replace",
    "/keys",
)


def assert_not_logged(caplog: Any, secrets: tuple[str, ...]) -> None:
    logged = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )
    assert [secret for secret in secrets if secret in logged] == []


def test_a_masked_value_without_a_stored_one_is_refused(client: Any, target: Target) -> None:
    spec = deploy_spec(target)
    assert client.post(f"{API}/pipelines", json=spec).status_code == 201
    shown = client.get(f"{API}/pipelines/deploys").json()["spec"]

    new_header = {**shown["deployment"]["target"]["headers"], "X-Extra": "***"}
    shown["deployment"]["target"]["headers"] = new_header
    response = client.put(f"{API}/pipelines/deploys", json=shown)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "deployment.target.webhook.headers.X-Extra"

    moved = client.get(f"{API}/pipelines/deploys").json()["spec"]
    moved["deployment"]["target"]["url"] = "http://deployer:***@elsewhere.example/deploy"
    response = client.put(f"{API}/pipelines/deploys", json=moved)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "deployment.target.webhook.url"

    fresh = pipeline_spec("fresh", deployment={"target": {**spec["deployment"]["target"]}})
    fresh["deployment"]["target"]["headers"] = {"X-Deploy-Token": "***"}
    assert client.post(f"{API}/pipelines", json=fresh).status_code == 422
    # Nothing changed: the stored header is still the real one.
    assert client.get(f"{API}/pipelines").json()["total"] == 1


def test_a_new_value_replaces_a_masked_one(client: Any, tmp_path: Path, target: Target) -> None:
    write_csv(tmp_path / "data" / "customers.csv", churn_frame())
    assert client.post(f"{API}/pipelines", json=deploy_spec(target)).status_code == 201
    shown = client.get(f"{API}/pipelines/deploys").json()["spec"]
    shown["deployment"]["target"]["headers"]["X-Deploy-Token"] = "Bearer rotated"
    assert client.put(f"{API}/pipelines/deploys", json=shown).status_code == 200
    run = wait_for_run(client, client.post(f"{API}/pipelines/deploys/runs").json()["id"])
    assert run["status"] == "completed"
    assert target.headers[-1]["X-Deploy-Token"] == "Bearer rotated"


@pytest.fixture
def pg_warehouse(tmp_path: Path) -> Iterator[str]:
    """A PostgreSQL database with a customers table; its URL carries a password (the test
    server trusts local connections, so the password is sent and ignored)."""
    url = create_pg_database()
    engine = create_engine(url)
    churn_frame().to_sql("customers", engine, index=False)
    engine.dispose()
    yield url.replace("postgres@", f"postgres:{SQL_PASSWORD}@")
    drop_pg_database(url)


def test_database_passwords_are_masked(
    client: Any, settings: Settings, pg_warehouse: str, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    settings.sql_url_allow = r"postgresql\+psycopg://.*"
    api = Recorder(client)
    source = {"kind": "sql", "url": pg_warehouse, "query": "SELECT * FROM customers"}
    assert api("POST", "/pipelines", json=pipeline_spec("warehouse", source=source)).is_success
    shown = api("GET", "/pipelines/warehouse").json()["spec"]["source"]["url"]
    assert shown == pg_warehouse.replace(SQL_PASSWORD, "***")

    assert api.run("/pipelines/warehouse")["status"] == "completed"
    shown_spec = api("GET", "/pipelines/warehouse").json()["spec"]
    shown_spec["source"]["query"] = "SELECT * FROM no_such_table"
    assert api("PUT", "/pipelines/warehouse", json=shown_spec).status_code == 200
    failed = api.run("/pipelines/warehouse")
    assert failed["error"] == 'SQL source error: relation "no_such_table" does not exist'
    for path in READS:
        api("GET", path.format(name="warehouse"))

    assert [body for body in api.bodies if SQL_PASSWORD in body] == []
    assert_not_logged(caplog, (SQL_PASSWORD,))
