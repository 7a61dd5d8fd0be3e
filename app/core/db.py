"""Engine, sessions and the declarative base shared by every domain's models."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Engine, MetaData, create_engine, event
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
# What a read runs its statements on: a session, or a bare connection where the ORM's
# per-statement work would cost more than the statement (see read_connection).
Reader = Session | Connection
# One lock per SQLite engine: this process's writers queue on it (see unit_of_work).
_WRITER_TURNS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
READ_ONLY = "mlops_read_only"
# SQLite's driver already leaves every statement to commit itself (the engine turns its own
# transaction handling off); this flag only stops the BEGIN we would send. Cheaper than the
# AUTOCOMMIT isolation level, which SQLAlchemy sets and resets with PRAGMAs each checkout.
AUTOCOMMIT = "mlops_autocommit"
SQLITE_AUTOCOMMIT = {AUTOCOMMIT: True, READ_ONLY: True}
# Ids are 32-bit integers on every backend; a larger number names no row, and binding one
# overflows SQLite's driver. Offsets get the same bound.
MAX_ID = 2**31 - 1
MAX_OFFSET = MAX_ID


def make_engine(url: str) -> Engine:
    """An engine; SQLite gets WAL, a busy timeout, foreign keys and real transactions."""
    if url.startswith("sqlite"):
        return sqlite_engine(url)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def sqlite_engine(url: str, **options: Any) -> Engine:
    """A SQLite engine with this module's settings (make_engine's, with other options)."""
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **options)
    _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    _WRITER_TURNS[engine] = threading.RLock()

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
        options = conn.get_execution_options()
        if options.get(AUTOCOMMIT, False):
            return  # each statement its own transaction (read_connection)
        conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY, False) else "BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (they are read back into schemas)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: SessionFactory, *, queue: bool = True) -> Iterator[Session]:
    """One transaction owned by the caller: commit on success, roll back on error.

    On SQLite, units of one process take turns in arrival order (`queue`), instead of all
    polling the database's single write lock with SQLite's growing back-off sleeps, which let
    a scheduler tick wait seconds behind a burst of run-step writes.
    """
    session = factory()
    try:
        with _writer_turn(session) if queue else nullcontext():
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
        run_after_commit(session)
    finally:
        session.close()


def engine_of(session: Session) -> Engine:
    """The engine a session's statements go to (its bind, or the bind's engine)."""
    bind = session.get_bind()
    return bind if isinstance(bind, Engine) else bind.engine


def _writer_turn(session: Session) -> AbstractContextManager[object]:
    return _WRITER_TURNS.get(engine_of(session), nullcontext())


@contextmanager
def read_only_unit(factory: SessionFactory, *, snapshot: bool = False) -> Iterator[Session]:
    """A transaction that only reads; on SQLite it takes no write lock. With `snapshot`, all
    its statements see one snapshot (REPEATABLE READ on PostgreSQL; a SQLite read transaction
    always does)."""
    session = factory()
    try:
        options: dict[str, Any] = {READ_ONLY: True}
        if snapshot and session.get_bind().dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        session.connection(execution_options=options)
        yield session
        session.rollback()
    finally:
        session.close()


@contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    """A connection for a few reads that need no common snapshot, without the ORM session's
    per-statement cost: each statement is its own transaction (autocommit), so no BEGIN and
    ROLLBACK go with them; on SQLite a read takes no write lock."""
    with engine.connect().execution_options(**autocommit_options(engine)) as connection:
        yield connection


def autocommit_options(engine: Engine) -> dict[str, Any]:
    """Execution options under which each statement is its own transaction."""
    if engine.dialect.name == "postgresql":
        return {"isolation_level": "AUTOCOMMIT"}
    return dict(SQLITE_AUTOCOMMIT)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run callback once the owning transaction has committed (e.g. hand a run to a worker)."""
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: Session) -> None:
    """Called by transaction owners right after commit."""
    callbacks: list[Callable[[], None]] = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()
