"""The `sql` source: one query, in a read-only transaction that is never committed, on a
database the policy allows (`sql_policy`)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import URL, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.core.errors import SourceError
from app.core.settings import Settings
from app.datasources.files import resolve_local_path
from app.datasources.messages import MASK, first_line
from app.datasources.sql_policy import source_url
from app.spec.schema import SqlSource

# Issued first on the connection; other databases rely on the rollback at the end
# and on the credentials in the URL (give the source a read-only database user).
_READ_ONLY = {"postgresql": "SET TRANSACTION READ ONLY", "sqlite": "PRAGMA query_only = ON"}
# psycopg 3 is the PostgreSQL driver we ship; these names would ask for psycopg2.
_PSYCOPG2_NAMES = ("postgres", "postgresql", "postgresql+psycopg2")


def load_sql(source: SqlSource, settings: Settings) -> pd.DataFrame:
    """Run the source's query and return its rows; any database error is a SourceError."""
    url = _prepared_url(source_url(source, settings), settings)
    engine = _engine(url)
    dbapi_error: Any = engine.dialect.loaded_dbapi.Error
    try:
        return _read(engine, source.query)
    except (SQLAlchemyError, dbapi_error) as exc:
        raise SourceError(f"SQL source error: {_reason(exc, url)}") from exc
    finally:
        engine.dispose()


def masked_url(raw: str) -> str:
    """The database URL with its password replaced by ***."""
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable database URL>"


def _prepared_url(raw: str, settings: Settings) -> URL:
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        # `from None`: the parser's message would repeat the URL, password included.
        raise SourceError(
            "SQL source error: could not parse the database URL "
            "(expected dialect+driver://user:password@host/database)"
        ) from None
    if url.drivername in _PSYCOPG2_NAMES:
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite":
        url = _confined_sqlite(url, settings)
    return url


def _confined_sqlite(url: URL, settings: Settings) -> URL:
    """A SQLite database is a file: the same MLOPS_SOURCE_DIRS rule as csv and parquet."""
    if url.database in (None, "", ":memory:"):
        return url
    # Also stops SQLite from creating an empty database file for a mistyped path.
    return url.set(database=str(resolve_local_path(url.database, settings)))


def _engine(url: URL) -> Engine:
    try:
        # NullPool: one connection per load, really closed when the load ends.
        return create_engine(url, poolclass=NullPool)
    except ImportError as exc:
        raise SourceError(f"SQL source error: database driver not installed: {exc}") from exc
    except (SQLAlchemyError, ValueError, TypeError) as exc:
        raise SourceError(f"SQL source error: {_reason(exc, url)}") from exc


def _read(engine: Engine, query: str) -> pd.DataFrame:
    # Never committed: closing the connection rolls the transaction back.
    with engine.connect() as connection:
        read_only = _READ_ONLY.get(engine.dialect.name)
        if read_only is not None:
            connection.exec_driver_sql(read_only)
        driver_connection = connection.connection.driver_connection
        return _fetch(driver_connection, query, psycopg=engine.dialect.driver == "psycopg")


def _fetch(driver_connection: Any, query: str, *, psycopg: bool) -> pd.DataFrame:
    """Run `query` exactly as written (no parameter parsing) on the DBAPI connection."""
    cursor = driver_connection.cursor()
    try:
        if psycopg:
            # A prepared statement holds one command, so "COMMIT; DROP …" cannot end the
            # read-only transaction and run a write after it.
            cursor.execute(query, prepare=True)
        else:
            cursor.execute(query)
        if cursor.description is None:
            raise SourceError("SQL source error: the query returns no rows; use a SELECT")
        columns = [str(column[0]) for column in cursor.description]
        # coerce_float: NUMERIC comes back as Decimal; models want floats.
        return pd.DataFrame.from_records(cursor.fetchall(), columns=columns, coerce_float=True)
    finally:
        cursor.close()


def _reason(exc: BaseException, url: URL) -> str:
    """The driver's first line, with the URL's password masked should a driver echo it."""
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    reason = first_line(original)
    if url.password:
        reason = reason.replace(str(url.password), MASK)
    return reason
