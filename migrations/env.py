"""Alembic environment: migrates the database named by the caller or by MLOPS_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from app.core.db import make_engine
from app.core.settings import get_settings
from app.tables import Base

# Replicas starting together must not race the migration: one holds this lock, others wait.
MIGRATION_LOCK_KEY = 7_412_093_551


def _url() -> str:
    configured = context.config.get_main_option("sqlalchemy.url")
    return configured or get_settings().resolved_database_url


def _migrate(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        # Batch mode rebuilds a table by copying it and dropping the old one; with foreign
        # keys on, SQLite deletes the old table's rows first and cascades that to every table
        # that references it. The pragma only works outside a transaction: before BEGIN.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    try:
        _run(connection)
    finally:
        if connection.dialect.name == "sqlite":
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
