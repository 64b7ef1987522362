"""What the SQL store runs on: one small interface (reads, writes, bounded reads), one module
per engine (`sqlite_database`, `mysql_database`); `sql_store.open_database` picks by URL.

Every operation is one plain function over a sync SQLAlchemy `Connection`, run in a single hop
(on SQLite in a thread, on MySQL through `AsyncConnection.run_sync`): a driver like aiosqlite
pays a thread round trip per statement, one hop per operation pays one whatever the number of
statements (docs/benchmarks.md has what that was worth).

A bounded read is the kind a page needs (a chat by its number, a page of chats or of
messages): an index range stopped by a `LIMIT`, compiled once to its SQL and run as is, its
rows taken raw (times as the driver gives them). Each engine runs those its cheapest way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, IntegrityError

from graphql_chat.errors import Unavailable

R = TypeVar("R")

Operation = Callable[[Any], R]  # over a sync `Connection`


class Database(Protocol):
    url: str
    is_sqlite: bool

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def read(self, operation: Callable[[Any], R]) -> R:
        """Run `operation` on a connection outside any explicit transaction."""

    async def write(self, operation: Callable[[Any], R]) -> R:
        """Run `operation` in one transaction, committed when it returns. Raises
        `IntegrityError` as it is (the caller decides), `Unavailable` for other database
        errors."""

    async def bounded(self, statement: Any, params: dict[str, Any], rows: int) -> list[Any]:
        """The raw rows of a statement made once that reads at most `rows` rows through an
        index."""

    def on_statement(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Have `callback` hear the SQL of every statement run from now on, on any
        connection (for instrumentation); returns what stops it."""

    def is_unique_violation(self, error: IntegrityError) -> bool: ...

    def now(self) -> Any:
        """The database's clock to the microsecond, as a statement."""


@contextmanager
def translated() -> Iterator[None]:
    """The database's errors as `Unavailable`, but an `IntegrityError` as it is (its caller
    decides what a violated constraint means)."""
    try:
        yield
    except IntegrityError:
        raise
    except DBAPIError as error:
        raise Unavailable("the database is unavailable; retry shortly") from error


class Compiled:
    """Statements made once, compiled once for a dialect: their SQL and how to order their
    parameters, so a bounded read skips SQLAlchemy's per-statement work."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._made: dict[Any, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def __call__(self, statement: Any, params: dict[str, Any]) -> tuple[str, Any]:
        made = self._made.get(statement)
        if made is None:
            compiled = statement.compile(dialect=self._dialect)
            order = tuple(compiled.positiontup or ()) if compiled.positional else None
            made = self._made[statement] = (compiled.string, order, dict(compiled.params))
        sql, order, defaults = made
        given = {**defaults, **params}
        return sql, tuple(given[name] for name in order) if order is not None else given
