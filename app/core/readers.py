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
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.core.db import autocommit_options, sqlite_engine

T = TypeVar("T")
THREADS = 2


class KeptConnection:
    """One connection, opened at the first read and kept; used by one thread at a time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._connection: Connection | None = None

    def read(self, work: Callable[[Connection], T]) -> T:
        if self._connection is None:
            options = autocommit_options(self.engine)
            self._connection = self.engine.connect().execution_options(**options)
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
