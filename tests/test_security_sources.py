"""Safe data sources, through the API: files only from MLOPS_SOURCE_DIRS, http(s) bounded in
time and size, SQL only from configured connections or an allowed URL pattern (never the
service's own database), and queries run read-only."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, make_url, text

from app.core.settings import Settings
from tests.conftest import create_pg_database, drop_pg_database
from tests.factories import churn_frame, pipeline_spec, wait_for_run, write_csv

API = "/api/v1"
NAME = "sources"
BASE = f"{API}/pipelines/{NAME}"
SECRET = "root:x:0:0:the-secret-line"


def run_on(client: Any, source: dict[str, Any]) -> dict[str, Any]:
    """Apply a pipeline reading `source`, trigger it, and return the finished run."""
    response = client.put(f"{BASE}", json=pipeline_spec(NAME, source=source))
    assert response.status_code in (200, 201), response.text
    triggered = client.post(f"{BASE}/runs")
    assert triggered.status_code == 202, triggered.text
    return wait_for_run(client, triggered.json()["id"])


def load_error(run: dict[str, Any]) -> str:
    assert run["status"] == "failed", run
    [load] = [step for step in run["steps"] if step["name"] == "load_data"]
    assert load["status"] == "failed"
    error: str = run["error"]
    return error


# ---------------------------------------------------------------- files


@pytest.fixture
def secret_outside(tmp_path: Path) -> Path:
    """A readable file next to, not inside, the source directory (tmp_path/data)."""
    secret = tmp_path / "secret.csv"
    secret.write_text(f"line\n{SECRET}\n")
    return secret


@pytest.fixture
def confined(client: Any, settings: Settings, tmp_path: Path) -> Path:
    """The app reads files from tmp_path/data only."""
    data = tmp_path / "data"
    write_csv(data / "customers.csv", churn_frame())
    settings.source_dirs = [data]
    return data


def escapes(secret: Path, data: Path) -> dict[str, str]:
    (data / "innocent.csv").symlink_to(secret)
    (data / "linked-dir").symlink_to(secret.parent, target_is_directory=True)
    return {
        "../secret.csv": "not allowed",
        "sub/../../secret.csv": "not allowed",
        str(secret): "not allowed",
        "/etc/passwd": "not allowed",
        "innocent.csv": "not allowed",  # a symlink out of the directory
        "linked-dir/secret.csv": "not allowed",  # a symlinked directory
        "file:///etc/passwd": "Unsupported data source URL",
        f"file://{secret}": "Unsupported data source URL",
        "FILE:///etc/passwd": "Unsupported data source URL",
        "~/secret.csv": "not found",  # no ~ expansion: a file called '~' would be needed
        "%2e%2e/secret.csv": "not found",  # no URL decoding of local paths
        "..\\secret.csv": "not found",  # a backslash is a file-name character here
    }


def test_file_sources_cannot_leave_the_source_dirs(
    client: Any, confined: Path, secret_outside: Path
) -> None:
    for path, why in escapes(secret_outside, confined).items():
        if why == "not allowed":
            # Refused when the spec is stored (and again at run time, see
            # test_inbound_hardening): nothing is stored, no run is made.
            error = stored_refusal(client, {"kind": "csv", "path": path})
        else:
            error = load_error(run_on(client, {"kind": "csv", "path": path}))
        assert why in error, (path, error)
        assert SECRET not in error
    history = client.get(f"{BASE}/runs?limit=500").text
    assert SECRET not in history


def test_the_services_own_files_are_never_a_source(
    client: Any, settings: Settings, tmp_path: Path
) -> None:
    # Even with every directory allowed, its database and artifacts are off limits.
    settings.source_dirs = [Path("/")]
    own = [settings.data_dir / "x.csv", settings.resolved_artifact_dir / "x.csv"]
    if settings.resolved_database_url.startswith("sqlite"):
        own.append(Path(make_url(settings.resolved_database_url).database or ""))
    for path in own:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text("a\n1\n")
        error = stored_refusal(client, {"kind": "csv", "path": str(path)})
        assert "not allowed" in error and "inside the service's data directory" in error


def stored_refusal(client: Any, source: dict[str, Any]) -> str:
    """The message of the 422 that refuses to store a spec reading `source`."""
    response = client.put(f"{BASE}", json=pipeline_spec(NAME, source=source))
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert error["loc"] == f"source.{source['kind']}.path"
    message: str = error["msg"]
    return message


def test_nul_bytes_in_paths_are_refused_at_the_door(client: Any) -> None:
    spec = pipeline_spec(NAME, source={"kind": "csv", "path": "data/x\x00.csv"})
    response = client.post(f"{API}/pipelines", json=spec)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == "source.csv.path"


# ---------------------------------------------------------------- http(s)


class _Hostile(BaseHTTPRequestHandler):
    """/big: more than the cap, declared; /stream: more, undeclared; /trickle: a byte at a
    time, each in time but never done."""

    def do_GET(self) -> None:
        self.send_response(200)
        if self.path == "/big":
            body = b"n\n" + b"1\n" * 5000
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.end_headers()
        chunk, pause = (b"1\n" * 500, 0.0) if self.path == "/stream" else (b"1\n", 0.05)
        try:
            self.wfile.write(b"n\n")
            for _ in range(200):
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:
            pass  # the client hung up: the point

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hostile_web() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host!s}:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections (the kernel does) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_http_sources_are_capped_in_size_and_time(
    client: Any, settings: Settings, hostile_web: str, silent_port: int
) -> None:
    settings.http_source_max_bytes = 1000
    settings.http_source_timeout_s = 0.5
    cases = {
        f"{hostile_web}/big": "over the limit of 1000 bytes (MLOPS_HTTP_SOURCE_MAX_BYTES)",
        f"{hostile_web}/stream": "over the limit of 1000 bytes (MLOPS_HTTP_SOURCE_MAX_BYTES)",
        f"{hostile_web}/trickle": "Data source timed out after 0.5s",
        f"http://127.0.0.1:{silent_port}/never.csv": "Data source timed out after 0.5s",
    }
    for url, why in cases.items():
        started = time.monotonic()
        error = load_error(run_on(client, {"kind": "csv", "path": url}))
        assert why in error, (url, error)
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------- SQL: which databases


def sql_spec(**source: Any) -> dict[str, Any]:
    return pipeline_spec(NAME, source={"kind": "sql", "query": "SELECT * FROM customers", **source})


def refusal(client: Any, spec: dict[str, Any]) -> dict[str, str]:
    response = client.post(f"{API}/pipelines", json=spec)
    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert client.get(f"{API}/pipelines").json()["total"] == 0
    return dict(error)


def table_count(settings: Settings) -> int:
    engine = create_engine(str(settings.database_url))
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM pipelines")).scalar_one()
    engine.dispose()
    return int(count)


def test_a_spec_cannot_point_at_the_services_own_database(client: Any, settings: Settings) -> None:
    own = str(settings.database_url)
    drop = refusal(client, sql_spec(url=own, query="DROP TABLE pipelines"))
    assert drop["loc"] in ("source.sql.url", "source.sql.query")
    # Not even with a pattern that allows every URL, nor to read.
    settings.sql_url_allow = ".*"
    error = refusal(client, sql_spec(url=own, query="SELECT * FROM pipelines"))
    assert error == {
        "loc": "source.sql.url",
        "msg": "SQL source not allowed: that is the service's own database; point the source "
        "at a copy, or a read-only replica of the data it needs",
    }
    assert table_count(settings) == 0  # the table is still there


def test_database_urls_must_match_the_allow_pattern(client: Any, settings: Settings) -> None:
    url = "postgresql+psycopg://reader:pw@warehouse.internal/sales"
    error = refusal(client, sql_spec(url=url))
    assert error["loc"] == "source.sql.url"
    assert "must match MLOPS_SQL_URL_ALLOW (not set)" in error["msg"]
    assert "pw" not in error["msg"]
    settings.sql_url_allow = r"postgresql\+psycopg://reader:[^@]*@warehouse\.internal/\w+"
    assert refusal(client, sql_spec(url=url + "x?options=-c"))["loc"] == "source.sql.url"
    response = client.post(f"{API}/pipelines", json=sql_spec(url=url))
    assert response.status_code == 201, response.text


def test_unknown_connection_names_are_refused(client: Any, settings: Settings) -> None:
    settings.sql_connections = {"warehouse": "sqlite:///warehouse.db"}
    error = refusal(client, sql_spec(connection="crm"))
    assert error == {
        "loc": "source.sql.connection",
        "msg": "SQL connection 'crm' is not configured (MLOPS_SQL_CONNECTIONS: warehouse)",
    }
    both = refusal(client, sql_spec(connection="warehouse", url="sqlite:///warehouse.db"))
    assert both["loc"] == "source.sql"
    assert "exactly one of url or connection" in both["msg"]


@pytest.mark.parametrize(
    "query",
    [
        "DROP TABLE customers",
        "DELETE FROM customers",
        "COPY (SELECT 1) TO PROGRAM 'touch /tmp/x'",
        "  -- comment\n  UPDATE customers SET age = 0",
        "/* x */ CREATE TABLE t (a int)",
        "WITH gone AS (DELETE FROM customers RETURNING *) SELECT * FROM gone",
        "SELECT 1; DELETE FROM customers",
        "",
    ],
)
def test_only_reading_queries_are_accepted(client: Any, settings: Settings, query: str) -> None:
    settings.sql_connections = {"warehouse": "sqlite:///warehouse.db"}
    spec = sql_spec(connection="warehouse", query=query)
    error = refusal(client, spec)
    assert error["loc"] == "source.sql.query"


@pytest.fixture
def warehouse(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A database with a `customers` table, on the backend under test, as a connection."""
    frame = churn_frame()
    if str(settings.database_url).startswith("postgresql"):
        url = create_pg_database()
    else:
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    engine = create_engine(url)
    frame.to_sql("customers", engine, index=False)
    engine.dispose()
    settings.sql_connections = {"warehouse": url}
    yield url
    if url.startswith("postgresql"):
        drop_pg_database(url)


def customers(url: str) -> int:
    engine = create_engine(url)
    with engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM customers")).scalar_one()
    engine.dispose()
    return int(count)


def test_a_configured_connection_is_read(client: Any, warehouse: str) -> None:
    run = wait_for_run(client, trigger(client, sql_spec(connection="warehouse")))
    assert run["status"] == "completed", run
    assert run["steps"][0]["detail"] == "300 rows x 4 columns from sql connection warehouse"


@pytest.mark.parametrize(
    ("query", "postgresql", "sqlite"),
    [
        (
            "SELECT set_config('transaction_read_only', 'off', false)",
            "transaction read-write mode must be set before any query",
            "no such function: set_config",
        ),
    ],
)
def test_queries_run_read_only(
    client: Any, warehouse: str, query: str, postgresql: str, sqlite: str
) -> None:
    run = wait_for_run(client, trigger(client, sql_spec(connection="warehouse", query=query)))
    assert run["status"] == "failed", run
    expected = postgresql if warehouse.startswith("postgresql") else sqlite
    assert expected in run["error"]
    assert run["error"].startswith("SQL source error: ")
    assert customers(warehouse) == 300


def trigger(client: Any, spec: dict[str, Any]) -> int:
    response = client.put(f"{BASE}", json=spec)
    assert response.status_code in (200, 201), response.text
    triggered = client.post(f"{BASE}/runs")
    assert triggered.status_code == 202, triggered.text
    run_id: int = triggered.json()["id"]
    return run_id


def test_sqlite_databases_are_files_under_the_same_rule(
    client: Any, settings: Settings, tmp_path: Path
) -> None:
    outside = tmp_path.parent / f"{tmp_path.name}-outside.db"
    with sqlite3.connect(outside) as connection:
        connection.execute("CREATE TABLE customers (age INTEGER)")
    connection.close()
    response = client.put(f"{BASE}", json=sql_spec(url=f"sqlite:///{outside}"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == "source.sql.url"
    assert "Data source path not allowed" in response.json()["detail"]
    outside.unlink()
