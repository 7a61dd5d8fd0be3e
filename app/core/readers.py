"""Where the API's hottest reads run: over connections kept open for them, outside the pool.

Such a read is a statement or two on indexed rows. Taking a pooled connection for it costs
more than the statements (a checkout, a ping on PostgreSQL, the reset on return), and handing
it to one of the many threadpool threads costs more again: they queue with the event loop for
the interpreter lock, which then serves every request more slowly.

- SQLite: the reads run on the event loop's own thread, over one connection that is the
  loop's alone. SQLite answers them in less time than a thread hop takes; in WAL mode a
  reader never waits for a writer, and the loop never waits for a pooled connection.
- PostgreSQL: the reads wait on the network, so they run on two threads of their own, each
  over its own connection.

Every statement commits itself (autocommit), so each read sees the latest commit, whichever
replica made it. A connection that fails is closed and opened afresh for the next read.

`Readers.version()` names the database's committed state, so that a reader can tell
whether anything has been committed since an earlier read, by any connection, process or
replica: equal versions mean no commit in between.

- SQLite: `PRAGMA data_version`, which changes when another connection commits (its own
  never write), paired with the connection's number, as the count is per connection.
- PostgreSQL: `pg_current_snapshot()`, the transactions committed so far as the next
  snapshot sees them. Two equal snapshots have the same next transaction id and the same
  transactions in progress, so no transaction committed in between: every row any statement
  can see is as it was. It is asked over an asynchronous connection of the event loop's own,
  so a reader that finds nothing changed needs no thread at all.

Versions never come back: SQLite's count only grows, and a snapshot's next transaction id
only grows, its transactions in progress only shrinking while that id stays. So a value read
after a version was taken, and kept under that version, can only ever be served again while
nothing has been committed since: it is exactly what a read then gives.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.core.db import autocommit_options, sqlite_engine

T = TypeVar("T")
THREADS = 2
SNAPSHOT = "SELECT pg_current_snapshot()::text"
OPENED = "mlops_opened"  # Connection.info key: which opening of a kept connection this is
_OPENINGS = itertools.count(1)


class KeptConnection:
    """One connection, opened at the first read and kept; used by one thread at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def read(self, work: Callable[[Connection], T]) -> T:
        if self._connection is None:
            options = autocommit_options(self.engine)
            self._connection = self.engine.connect().execution_options(**options)
            self._connection.info[OPENED] = next(_OPENINGS)
        connection = self._connection
        try:
            return work(connection)
        except DBAPIError:
            self.close()
            raise
        finally:
            if self._connection is not None:
                connection.rollback()  # nothing is open in the database; resets SQLAlchemy's view

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Readers:
    """Runs `work(connection)` for the read lane, on SQLite's loop or PostgreSQL's threads."""

    def __init__(self, engine: Engine) -> None:
        # Connections of their own, never from (or waiting on) the service's pool.
        url = engine.url.render_as_string(hide_password=False)
        self.on_loop = engine.dialect.name == "sqlite"
        self.engine = (
            sqlite_engine(url, poolclass=NullPool)
            if self.on_loop
            else create_engine(url, poolclass=NullPool)
        )
        self._loop_connection = KeptConnection(self.engine)
        self._kept: list[KeptConnection] = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self._probe = (
            SnapshotProbe(self.engine) if self.engine.dialect.driver == "psycopg" else None
        )

    async def version(self) -> Hashable:
        """The database's committed state now (see the module's docstring)."""
        if self._probe is not None:
            return await self._probe.version()
        return self._loop_connection.read(self._sqlite_version)

    def _sqlite_version(self, connection: Connection) -> Hashable:
        raw: Any = connection.connection.driver_connection
        statement = "PRAGMA data_version"
        try:
            # The driver's own call: through SQLAlchemy it would cost more than the statement.
            value = raw.execute(statement).fetchone()[0]
        except self.engine.dialect.loaded_dbapi.Error as error:
            raise DBAPIError(statement, None, error) from error  # KeptConnection reconnects
        return (connection.info[OPENED], value)

    async def read(self, work: Callable[[Connection], T]) -> T:
        if self.on_loop:
            return self._loop_connection.read(work)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor(), self._in_thread, work)

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, None
            kept, self._kept = self._kept, []
        if threads is not None:
            threads.shutdown(wait=True)
        for connection in [self._loop_connection, *kept]:
            connection.close()
        if self._probe is not None:
            self._probe.close()
        self.engine.dispose()

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(THREADS, thread_name_prefix="mlops-read")
            return self._threads

    def _in_thread(self, work: Callable[[Connection], T]) -> T:
        kept: KeptConnection | None = getattr(self._local, "kept", None)
        if kept is None:
            kept = self._local.kept = KeptConnection(self.engine)
            with self._lock:
                self._kept.append(kept)
        return kept.read(work)


class SnapshotProbe:
    """PostgreSQL's current snapshot, asked over one asynchronous connection of the event
    loop's own (a new loop, as in tests, gets a new connection).

    Requests that arrive while a probe is on the wire share the next one: it is sent after
    each of them arrived, so what it answers is at least as new as any of them needs.
    """

    def __init__(self, engine: Engine) -> None:
        url = engine.url.set(drivername="postgresql")
        self.conninfo = url.render_as_string(hide_password=False)
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._cursor: psycopg.AsyncCursor[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy = False
        self._next: asyncio.Future[Hashable] | None = None

    async def version(self) -> Hashable:
        """The snapshot's text."""
        if not self._busy:
            return await self._lead()
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        # Shielded: a waiter cancelled (its client gone) must not cancel the others' answer.
        return await asyncio.shield(self._next)

    async def _lead(self) -> Hashable:
        self._busy = True
        try:
            return await self._probe()
        finally:
            self._busy = False
            waiting, self._next = self._next, None
            if waiting is not None:
                self._busy = True  # whoever arrives now waits for the probe below
                asyncio.get_running_loop().create_task(self._answer(waiting))

    async def _answer(self, waiting: asyncio.Future[Hashable]) -> None:
        try:
            waiting.set_result(await self._lead())
        except Exception as error:  # every waiter sees the probe's own error
            waiting.set_exception(error)

    async def _probe(self) -> Hashable:
        cursor = await self._connected()
        try:
            await cursor.execute(SNAPSHOT, prepare=True)
            row = await cursor.fetchone()
        except psycopg.Error as error:
            self.close()
            raise DBAPIError(SNAPSHOT, None, error) from error
        assert row is not None  # a SELECT of one value returns one row
        snapshot: str = row[0]
        return snapshot

    async def _connected(self) -> psycopg.AsyncCursor[Any]:
        loop = asyncio.get_running_loop()
        if self._cursor is None or self._loop is not loop:
            self.close()
            try:
                connection = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            except psycopg.Error as error:
                raise DBAPIError("connect", None, error) from error
            self._connection, self._cursor, self._loop = connection, connection.cursor(), loop
        return self._cursor

    def close(self) -> None:
        """Close the connection, from any thread: libpq's own close needs no event loop."""
        connection, self._connection, self._cursor = self._connection, None, None
        if connection is not None:
            connection.pgconn.finish()
