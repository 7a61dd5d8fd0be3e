"""The first admin key: made once when no key exists, written 0600 to the data directory and
reused, never rewritten; one key even when replicas start together; the CLI finds it, and
manages keys over real HTTP."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from app.auth.service import new_key
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import TestClient, create_pg_database, drop_pg_database
from tests.server import Server

API = "/api/v1"


@pytest.fixture
def first_start(settings: Settings) -> Settings:
    """Settings with no MLOPS_ADMIN_TOKEN: a start makes (or finds) the bootstrap key."""
    return settings.model_copy(update={"admin_token": None})


def token_file(settings: Settings) -> Path:
    return settings.data_dir / "admin-token"


def start_and_list_keys(settings: Settings, key: str) -> list[dict[str, Any]]:
    """Start the app, list the keys with `key` (so it must be an admin key), stop."""
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {key}"}) as client:
        response = client.get(f"{API}/keys")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class TestBootstrapKey:
    def test_first_start_writes_an_admin_key_only_the_user_can_read(
        self, first_start: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        with caplog.at_level(logging.INFO), TestClient(create_app(first_start)):
            pass
        path = token_file(first_start)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        key = path.read_text().strip()
        [row] = start_and_list_keys(first_start, key)
        assert (row["name"], row["role"], row["created_by"]) == ("bootstrap", "admin", "system")
        assert key.startswith(row["prefix"])
        logged = "\n".join(record.getMessage() for record in caplog.records)
        assert str(path.resolve()) in logged
        assert key not in logged

    def test_restarts_reuse_the_file_and_the_key(self, first_start: Settings) -> None:
        with TestClient(create_app(first_start)):
            pass
        path = token_file(first_start)
        before = (path.read_text(), path.stat().st_ino, path.stat().st_mtime_ns)
        for _ in range(2):
            keys = start_and_list_keys(first_start, before[0].strip())
        assert (path.read_text(), path.stat().st_ino, path.stat().st_mtime_ns) == before
        assert [key["name"] for key in keys] == ["bootstrap"]

    def test_a_file_whose_key_never_reached_the_database_is_reused(
        self, first_start: Settings
    ) -> None:
        # As after a crash between writing the file and committing, or with a new database.
        path = token_file(first_start)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = new_key()
        path.write_text(key + "\n")
        path.chmod(0o600)
        [row] = start_and_list_keys(first_start, key)
        assert row["name"] == "bootstrap"
        assert path.read_text() == key + "\n"

    def test_a_file_holding_no_key_stops_the_start(self, first_start: Settings) -> None:
        path = token_file(first_start)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half-written")
        with (
            pytest.raises(RuntimeError, match="holds no API key"),
            TestClient(create_app(first_start)),
        ):
            pass
        assert path.read_text() == "half-written"

    def test_no_bootstrap_key_once_any_key_exists(
        self, settings: Settings, first_start: Settings
    ) -> None:
        with TestClient(create_app(settings)) as client:
            client.post(f"{API}/keys", json={"name": "someone", "role": "admin"})
        with TestClient(create_app(first_start)):
            pass
        assert not token_file(first_start).exists()

    def test_mlops_admin_token_overrides_the_bootstrap(self, settings: Settings) -> None:
        with TestClient(create_app(settings)) as client:
            assert client.get(f"{API}/keys").json()["total"] == 0
        assert not token_file(settings).exists()


@pytest.mark.postgres
def test_replicas_starting_together_make_one_key(tmp_path: Path) -> None:
    """Three first starts on one PostgreSQL, two of them sharing a data directory."""
    url = create_pg_database()
    dirs = [tmp_path / "shared", tmp_path / "shared", tmp_path / "own"]
    servers = [
        Server(tmp_path / f"replica-{i}", url, MLOPS_ADMIN_TOKEN="", MLOPS_DATA_DIR=str(d))
        for i, d in enumerate(dirs)
    ]
    try:
        for server in servers:
            server.workdir.mkdir()
        threads = [threading.Thread(target=server.start) for server in servers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        engine = create_engine(url)
        with engine.connect() as connection:
            names = connection.execute(text("SELECT name FROM api_keys")).scalars().all()
        engine.dispose()
        assert names == ["bootstrap"]
        files = [d / "admin-token" for d in set(dirs) if (d / "admin-token").exists()]
        assert len(files) == 1
        key = files[0].read_text().strip()
        for server in servers:
            headers = {"Authorization": f"Bearer {key}"}
            assert httpx.get(f"{server.url}{API}/keys", headers=headers).status_code == 200
    finally:
        for server in servers:
            server.kill()
        drop_pg_database(url)


class Cli:
    """`mlops` as a user runs it next to the server: no MLOPS_TOKEN unless given."""

    def __init__(self, server: Server) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("MLOPS_TOKEN", "COLUMNS")}
        self.env = {**env, "MLOPS_URL": server.url, "MLOPS_DATA_DIR": server.env["MLOPS_DATA_DIR"]}

    def __call__(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**self.env, **({"MLOPS_TOKEN": token} if token else {})}
        return subprocess.run(
            [sys.executable, "-m", "app.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def ok(self, *args: str, token: str | None = None) -> str:
        result = self(*args, token=token)
        assert result.returncode == 0, (result.stdout, result.stderr)
        return result.stdout


def test_cli_creates_lists_and_revokes_keys(fresh_database: str | None, tmp_path: Path) -> None:
    server = Server(tmp_path, database_url=fresh_database, MLOPS_ADMIN_TOKEN="").start()
    try:
        cli = Cli(server)
        created = json.loads(cli.ok("key", "create", "ci", "--role", "operator", "-o", "json"))
        key = created["key"]
        listing = cli.ok("key", "list")
        assert "bootstrap" in listing and "ci" in listing and created["prefix"] in listing
        assert key not in listing
        assert cli.ok("pipeline", "list", token=key).startswith("No pipelines yet")
        refused = cli("key", "list", token=key)
        assert (refused.returncode, refused.stderr.splitlines()[0]) == (
            1,
            f"Error: This needs the admin role; ci (key {created['id']}) has operator",
        )
        assert cli.ok("key", "revoke", str(created["id"])) == f"Key {created['id']} revoked\n"
        revoked = cli("pipeline", "list", token=key)
        assert revoked.returncode == 1
        assert "was revoked" in revoked.stderr
        assert cli("key", "create", "x", "--role", "root").returncode == 2
        path = Path(server.env["MLOPS_DATA_DIR"]) / "admin-token"
        before = path.read_text()
        server.stop()
        server.start()
        assert path.read_text() == before
        assert json.loads(cli.ok("key", "list", "-o", "json"))["total"] == 2
    finally:
        server.kill()
