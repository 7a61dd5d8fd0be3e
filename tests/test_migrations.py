"""The Alembic migrations build exactly the schema the ORM models describe, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from app.core import migrate
from app.tables import Base
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database


@pytest.fixture(params=BACKENDS)
def fresh_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> object:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('migrate') / 'fresh.db'}"
        return
    url = create_pg_database()
    yield url
    drop_pg_database(url)


def test_migrated_schema_matches_the_models(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    engine = create_engine(fresh_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_upgrade_is_idempotent(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    migrate.upgrade(fresh_url)
    engine = create_engine(fresh_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {
        "pipelines",
        "runs",
        "run_steps",
        "model_versions",
        "promotions",
        "data_batches",
    } <= tables


@pytest.mark.postgres
def test_replicas_migrating_together_do_not_race(tmp_path: Path) -> None:
    url = create_pg_database()
    env = {**os.environ, "MLOPS_DATABASE_URL": url, "MLOPS_DATA_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "app.cli.main", "db", "upgrade"]
    try:
        processes = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for _ in range(4)
        ]
        outputs = [p.communicate(timeout=120)[0].decode() for p in processes]
        codes = [p.returncode for p in processes]
    finally:
        engine = create_engine(url)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection)
            revision = context.get_current_revision()
        engine.dispose()
        drop_pg_database(url)
    assert codes == [0, 0, 0, 0], outputs
    assert revision == ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
