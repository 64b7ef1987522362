"""SQLite under the SQL store: one writer thread for transactions (`BEGIN IMMEDIATE`), a few
reader threads (WAL: readers never wait for the writer), and the event loop's own thread for
bounded reads.

A bounded read on SQLite costs far less than handing it to a thread and back (docs/benchmarks.md
has the figures), and the thread's wait for the GIL lengthens every other request. So it runs
on the loop's thread (`_LoopReader`), unless it would wait for a lock: then it fails at once
and goes to the read threads.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry

from graphql_chat.adapters import sqlite_functions
from graphql_chat.adapters.sql_database import Compiled, translated

R = TypeVar("R")

_READ_THREADS = 4
# The most rows a read may return to run on the event loop's thread (a page of 100 chats'
# newest 10 messages); a larger one, which only a raised MAX_PAGE_SIZE asks, goes to a thread.
_LOOP_ROWS = 1000


def _configure(engine: Engine, synchronous: str, immediate: bool) -> None:
    """WAL, durable commits, and transactions we begin ourselves (BEGIN IMMEDIATE for writes)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
        sqlite_functions.register(dbapi_connection)

    if immediate:
        # Readers run in autocommit: each statement reads one consistent WAL snapshot.
        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def _engine(url: str, synchronous: str, size: int, immediate: bool) -> Engine:
    engine = create_engine(
        url.replace("+aiosqlite", "", 1),
        pool_size=size,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"check_same_thread": False},
        # Readers autocommit: returning one to the pool has nothing to roll back.
        pool_reset_on_return="rollback" if immediate else None,
    )
    _configure(engine, synchronous, immediate)
    return engine


class _LoopReader:
    """A SQLite connection for the event loop's own thread, for bounded reads. It never
    waits: with no busy timeout, a read that would wait for a lock (another connection
    recovering the WAL after a crash, say) fails at once with `sqlite3.OperationalError`,
    and the caller reads on a thread instead."""

    def __init__(self, url: str) -> None:
        database = make_url(url).database or ""
        self._connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA busy_timeout=0")
        self._connection.execute("PRAGMA query_only=ON")

    def rows(self, sql: str, params: Any) -> list[Any]:
        return self._connection.execute(sql, params).fetchall()

    def close(self) -> None:
        self._connection.close()


def _in_thread(engine: Engine, write: bool, operation: Callable[[Connection], R]) -> R:
    if write:
        with engine.begin() as conn:
            return operation(conn)
    with engine.connect() as conn:
        return operation(conn)


class SqliteDatabase:
    is_sqlite = True

    def __init__(self, url: str, synchronous: str = "FULL") -> None:
        self.url = url
        self._writer = _engine(url, synchronous, 1, immediate=True)
        self._reader = _engine(url, synchronous, _READ_THREADS, immediate=False)
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._read_threads = ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="sqlite-reader")
        self._loop_reader: _LoopReader | None = None
        self._compiled = Compiled(self._reader.dialect)
        self._heard: list[Callable[[str], None]] = []

    async def start(self) -> None:
        if self._loop_reader is None:
            self._loop_reader = _LoopReader(self.url)

    async def close(self) -> None:
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._writer.dispose)
        await loop.run_in_executor(self._read_threads, self._reader.dispose)
        self._write_thread.shutdown()
        self._read_threads.shutdown()

    async def read(self, operation: Callable[[Connection], R]) -> R:
        return await self._run(operation, write=False)

    async def write(self, operation: Callable[[Connection], R]) -> R:
        return await self._run(operation, write=True)

    async def _run(self, operation: Callable[[Connection], R], write: bool) -> R:
        executor = self._write_thread if write else self._read_threads
        engine = self._writer if write else self._reader
        with translated():
            return await asyncio.get_running_loop().run_in_executor(
                executor, _in_thread, engine, write, operation
            )

    async def bounded(self, statement: Any, params: dict[str, Any], rows: int) -> list[Any]:
        sql, values = self._compiled(statement, params)
        if self._loop_reader is not None and rows <= _LOOP_ROWS:
            for callback in self._heard:
                callback(sql)
            try:
                return self._loop_reader.rows(sql, values)
            except sqlite3.OperationalError:
                pass  # busy (or worse): the read threads wait, or say what is wrong
        return await self.read(lambda conn: list(conn.exec_driver_sql(sql, values)))

    def on_statement(self, callback: Callable[[str], None]) -> Callable[[], None]:
        def heard(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            callback(statement)

        engines = [self._writer, self._reader]
        for engine in engines:
            event.listen(engine, "before_cursor_execute", heard)
        self._heard.append(callback)

        def stop() -> None:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", heard)
            self._heard.remove(callback)

        return stop

    def is_unique_violation(self, error: IntegrityError) -> bool:
        return isinstance(error.orig, sqlite3.IntegrityError) and "UNIQUE" in str(error.orig)

    def now(self) -> Any:
        """The database's clock, as a statement."""
        return select(func.current_timestamp())
