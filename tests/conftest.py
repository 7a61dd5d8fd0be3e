"""Shared fixtures: one migrated database per backend (SQLite and PostgreSQL), cleaned
between tests, and the app served in-process (TestClient) on top of it."""

from __future__ import annotations

import os
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Table, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.core import migrate
from app.core.settings import Settings
from app.main import create_app
from app.tables import Base
from tests.s3server import set_aws_env
from tests.server import ADMIN_TOKEN, Server

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient as _TestClient

# The Playwright fixtures (browser, context, page) for the tests that use a real browser.
pytest_plugins = ["tests.browser"]

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Outbound calls still retry through a blip in tests, waiting milliseconds instead of seconds
# (every Settings() below and every test server's environment reads this).
os.environ.setdefault("MLOPS_OUTBOUND_BACKOFF_S", "0.01")
# Credentials for the moto S3 server, set before any test starts a training process: a
# forkserver's children inherit its environment from when it started, not the current one.
set_aws_env()


class TestClient(_TestClient):
    """Starlette's TestClient sending the test admin key (settings.admin_token) by default."""

    __test__ = False  # not a test class, whatever pytest thinks of the name

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.headers.setdefault("Authorization", ADMIN["Authorization"])


PG_ADMIN_URL = os.environ.get(
    "MLOPS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def postgres_or_skip() -> str:
    """The admin URL of the test PostgreSQL; in CI a missing server fails the test."""
    try:
        engine = create_engine(PG_ADMIN_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        message = f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return PG_ADMIN_URL


def create_pg_database() -> str:
    """A fresh, empty PostgreSQL database; returns its URL."""
    admin_url = postgres_or_skip()
    name = f"mlops_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database migrated to head, one per backend for the whole session."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'mlops.db'}"
        migrate.upgrade(url)
        yield url
        return
    url = create_pg_database()
    migrate.upgrade(url)
    yield url
    drop_pg_database(url)


def clean(url: str) -> None:
    """Empty every table (faster than migrating a new database for each test)."""
    engine = create_engine(url)
    tables = list(reversed(Base.metadata.sorted_tables))
    # A worker thread of the previous test's app may still be finishing a transaction; the
    # database can pick TRUNCATE as the deadlock victim, so try again.
    for attempt in range(5):
        try:
            with engine.begin() as connection:
                _empty(connection, tables)
            break
        except OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.5)
    engine.dispose()


def _empty(connection: Connection, tables: list[Table]) -> None:
    if connection.dialect.name == "postgresql":
        names = ", ".join(t.name for t in tables)
        connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        return
    for table in tables:
        connection.execute(table.delete())
    # AUTOINCREMENT tables remember their highest id; each test starts from 1 again.
    connection.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture(params=BACKENDS)
def fresh_database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """A fresh PostgreSQL database URL, or None for the server's own SQLite file."""
    url = create_pg_database() if request.param == "postgresql" else None
    yield url
    if url:
        drop_pg_database(url)


@pytest.fixture
def server(fresh_database: str | None, tmp_path: Path) -> Iterator[Server]:
    """The real `mlops serve` (not started yet) on each backend, killed at the end."""
    instance = Server(tmp_path, database_url=fresh_database)
    yield instance
    instance.kill()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    clean(database_url)
    return Settings(
        database_url=database_url,
        data_dir=tmp_path / ".mlops",
        source_dirs=[tmp_path],
        workers=2,
        # Runs still going when a test ends are ended at once, not waited for.
        shutdown_grace_s=0,
        admin_token=ADMIN_TOKEN,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client
