"""MySQL under the SQL store: SQLAlchemy's async engine on asyncmy for operations, and
asyncmy's own pool, in autocommit, for bounded reads.

SQLAlchemy's async engine runs each statement through a greenlet bridge and its result
machinery; the driver's cursor reads the same rows for a quarter of the CPU (docs/benchmarks.md
has the figures). One statement needs no transaction, so nothing is rolled back (a round trip)
when the connection goes back. No connection is pinged before use (another round trip); a
read that finds its connection closed by the server is read again on a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import asyncmy
import asyncmy.errors
from sqlalchemy import Connection, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from graphql_chat.adapters.sql_database import Compiled, translated
from graphql_chat.errors import Unavailable

R = TypeVar("R")

_DRIVER_READS = 20  # connections for the bounded reads, per process
_CONNECTION_LOST = (asyncmy.errors.OperationalError, asyncmy.errors.InterfaceError, OSError)
_DUPLICATE_KEY = 1062


class _DriverReader:
    """asyncmy's own pool, made with the arguments SQLAlchemy's dialect would give the
    driver, in autocommit."""

    def __init__(self, url: str, dialect: Any) -> None:
        args, kwargs = dialect.create_connect_args(make_url(url))
        self._connect = {**dict(zip(("host", "user", "password", "db"), args, strict=False))}
        self._connect.update(kwargs)
        self._connect["autocommit"] = True
        self._connect.setdefault("connect_timeout", 5)
        self._pool: Any = None

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await asyncmy.create_pool(
                minsize=1, maxsize=_DRIVER_READS, pool_recycle=3600, **self._connect
            )

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            await self._pool.wait_closed()
            self._pool = None

    async def rows(self, sql: str, values: Any) -> list[Any]:
        # A connection the server closed (a restart, an idle timeout, `KILL`) fails once; the
        # pool drops it, and the read is read again on another.
        for attempt in range(2):
            try:
                async with self._pool.acquire() as conn, conn.cursor() as cursor:
                    await cursor.execute(sql, values)
                    return list(await cursor.fetchall())
            except _CONNECTION_LOST as error:
                if attempt:
                    raise Unavailable("the database is unavailable; retry shortly") from error
            except asyncmy.errors.Error as error:
                raise Unavailable("the database is unavailable; retry shortly") from error
        raise AssertionError("unreachable")


class MysqlDatabase:
    is_sqlite = False

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = create_async_engine(
            url, pool_size=10, max_overflow=10, pool_pre_ping=False, pool_recycle=3600
        )
        self._reads = _DriverReader(url, self._engine.dialect)
        self._started = False
        self._compiled = Compiled(self._engine.dialect)
        self._heard: list[Callable[[str], None]] = []

    async def start(self) -> None:
        await self._reads.start()
        self._started = True

    async def close(self) -> None:
        await self._reads.close()
        self._started = False
        await self._engine.dispose()

    async def read(self, operation: Callable[[Connection], R]) -> R:
        with translated():
            try:
                async with self._engine.connect() as conn:
                    return await conn.run_sync(operation)
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
            # A pooled connection the server had closed (it restarted, or an idle timeout):
            # the pool let go of them all; a read is read again on a new one.
            async with self._engine.connect() as conn:
                return await conn.run_sync(operation)

    async def write(self, operation: Callable[[Connection], R]) -> R:
        with translated():
            async with self._engine.begin() as conn:
                return await conn.run_sync(operation)

    async def bounded(self, statement: Any, params: dict[str, Any], rows: int) -> list[Any]:
        sql, values = self._compiled(statement, params)
        if not self._started:  # before `start` (tools): through the engine
            return await self.read(lambda conn: list(conn.exec_driver_sql(sql, values)))
        for callback in self._heard:
            callback(sql)
        return await self._reads.rows(sql, values)

    def on_statement(self, callback: Callable[[str], None]) -> Callable[[], None]:
        def heard(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            callback(statement)

        engine = self._engine.sync_engine
        event.listen(engine, "before_cursor_execute", heard)
        self._heard.append(callback)

        def stop() -> None:
            event.remove(engine, "before_cursor_execute", heard)
            self._heard.remove(callback)

        return stop

    def is_unique_violation(self, error: IntegrityError) -> bool:
        return getattr(error.orig, "args", (None,))[0] == _DUPLICATE_KEY

    def now(self) -> Any:
        return select(func.now(6))
