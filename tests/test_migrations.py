"""The Alembic migrations build exactly the schema the ORM models describe, on both backends."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.core import migrate
from app.core.models import Base
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
