"""Engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.core.time import as_utc

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


SessionFactory = Callable[[], Session]
READ_ONLY = "mlops_read_only"


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout, foreign keys and real transactions."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def _configure_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; take it over.
    # BEGIN IMMEDIATE makes writers queue on the busy timeout instead of failing on upgrade.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Read-only units (GET requests, metrics) take no write lock, so bursts of readers
        # never queue behind, or block, the writers.
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (they are read back into schemas)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: SessionFactory) -> Iterator[Session]:
    """One transaction owned by the caller: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
        run_after_commit(session)
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_only_unit(factory: SessionFactory) -> Iterator[Session]:
    """A transaction that only reads; on SQLite it takes no write lock."""
    session = factory()
    try:
        session.connection(execution_options={READ_ONLY: True})
        yield session
        session.rollback()
    finally:
        session.close()


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run callback once the owning transaction has committed (e.g. hand a run to a worker)."""
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: Session) -> None:
    """Called by transaction owners right after commit."""
    callbacks: list[Callable[[], None]] = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()
