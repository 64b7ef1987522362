"""The store port on SQLAlchemy Core: SQLite embedded, MySQL (asyncmy) distributed.

Every operation is one plain function over a sync SQLAlchemy `Connection`, run in a single
hop: on SQLite in a thread (the writer thread for batches and applications, a small pool for
reads), on MySQL through `AsyncConnection.run_sync` on the asyncmy engine. A driver like
aiosqlite pays a thread round trip per statement; one hop per operation pays one whatever the
number of statements (docs/benchmarks.md has what that was worth).

Except the reads a page needs (a chat by its number, a page of chats or of messages): each is
an index range stopped by a `LIMIT`, compiled once to its SQL and run as is, its rows taken
raw. On SQLite they run on the event loop's own thread (`_LoopReader`): such a read costs
tens of microseconds, handing it to a thread and back ten times that in CPU, and the
thread's wait for the GIL lengthens every other request. A read that would wait for a lock
does not wait there: it goes to the read threads. On MySQL they go straight to the driver
(`_DriverReader`: asyncmy's own pool, in autocommit), not through SQLAlchemy's async bridge:
the same statement and rows for a quarter of the CPU. One statement needs no transaction, so
nothing is rolled back (a round trip) when the connection goes back. No MySQL connection is
pinged before use (another round trip); a read that finds its connection closed by the server
is read again on a new one.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncmy
import asyncmy.errors
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
    text,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from graphql_chat.adapters import sqlite_functions
from graphql_chat.domain import (
    Application,
    Chat,
    ChatCreated,
    Event,
    Message,
    MessageWritten,
    instant,
    now_micros,
)
from graphql_chat.errors import TokenClash, Unavailable, Unstorable
from graphql_chat.ports import (
    Applied,
    Claimed,
    IndexedMessage,
    StoredChat,
)
from graphql_chat.tables import applications, chats, idempotency_keys, messages, numbering

R = TypeVar("R")

_READ_THREADS = 4

# The most rows a read may return to run on the event loop's thread (a page of 100 chats'
# newest 10 messages); a larger one, which only a raised MAX_PAGE_SIZE asks, goes to a thread.
_LOOP_ROWS = 1000
_DRIVER_READS = 20  # MySQL connections for the bounded reads, per process
_CONNECTION_LOST = (asyncmy.errors.OperationalError, asyncmy.errors.InterfaceError, OSError)


def _configure_sqlite(engine: Engine, synchronous: str, immediate: bool) -> None:
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


def _sqlite_engine(url: str, synchronous: str, size: int, immediate: bool) -> Engine:
    engine = create_engine(
        url.replace("+aiosqlite", "", 1),
        pool_size=size,
        max_overflow=0,
        pool_timeout=60,
        connect_args={"check_same_thread": False},
        # Readers autocommit: returning one to the pool has nothing to roll back.
        pool_reset_on_return="rollback" if immediate else None,
    )
    _configure_sqlite(engine, synchronous, immediate)
    return engine


def _is_unique_violation(error: IntegrityError) -> bool:
    original = error.orig
    if isinstance(original, sqlite3.IntegrityError):
        return "UNIQUE" in str(original)
    return getattr(original, "args", (None,))[0] == 1062


def _unavailable(error: DBAPIError) -> Unavailable:
    return Unavailable("the database is unavailable; retry shortly")


class _LoopReader:
    """A SQLite connection for the event loop's own thread, for reads bounded by an index
    range and a `LIMIT`. It never waits: with no busy timeout, a read that would wait for a
    lock (another connection recovering the WAL after a crash, say) fails at once with
    `sqlite3.OperationalError`, and the caller reads on a thread instead."""

    def __init__(self, url: str) -> None:
        database = make_url(url).database or ""
        self._connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA busy_timeout=0")
        self._connection.execute("PRAGMA query_only=ON")

    def rows(self, sql: str, params: Any) -> list[Any]:
        return self._connection.execute(sql, params).fetchall()

    def close(self) -> None:
        self._connection.close()


class _DriverReader:
    """MySQL connections of asyncmy's own pool for the bounded reads, in autocommit, made with
    the arguments SQLAlchemy's dialect would give the driver. SQLAlchemy's async engine runs
    each statement through a greenlet bridge and its result machinery (590 µs of CPU for a
    51-row page, measured); the driver's cursor reads the same rows for about 150 µs."""

    def __init__(self, url: str, dialect: Any) -> None:
        args, kwargs = dialect.create_connect_args(make_url(url))
        self._connect = {**dict(zip(("host", "user", "password", "db"), args, strict=False))}
        self._connect.update(kwargs)
        self._connect["autocommit"] = True
        self._connect.setdefault("connect_timeout", 5)
        self._pool: Any = None

    async def start(self) -> None:
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


class SqlStore:
    def __init__(self, url: str, synchronous: str = "FULL") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._engine: AsyncEngine | None = None
        self._loop_reader: _LoopReader | None = None
        self._heard: list[Callable[[str], None]] = []  # see `on_statement`
        self._compiled: dict[Any, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}
        if self.is_sqlite:
            self._writer = _sqlite_engine(url, synchronous, 1, immediate=True)
            self._reader = _sqlite_engine(url, synchronous, _READ_THREADS, immediate=False)
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
            self._read_threads = ThreadPoolExecutor(
                _READ_THREADS, thread_name_prefix="sqlite-reader"
            )
        else:
            self._engine = create_async_engine(
                url, pool_size=10, max_overflow=10, pool_pre_ping=False, pool_recycle=3600
            )
            self._driver_reads = _DriverReader(url, self._engine.dialect)
        self._driver_reader: _DriverReader | None = None

    def on_statement(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Have `callback` hear the SQL of every statement run from now on, on any connection
        (for instrumentation); returns what stops it."""

        def heard(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            callback(statement)

        engines = (
            [self._engine.sync_engine]
            if self._engine is not None
            else [
                self._writer,
                self._reader,
            ]
        )
        for engine in engines:
            event.listen(engine, "before_cursor_execute", heard)
        self._heard.append(callback)

        def stop() -> None:
            for engine in engines:
                event.remove(engine, "before_cursor_execute", heard)
            self._heard.remove(callback)

        return stop

    async def start(self) -> None:
        await self.read(lambda conn: conn.execute(select(func.count()).select_from(applications)))
        if self.is_sqlite and self._loop_reader is None:
            self._loop_reader = _LoopReader(self.url)
        if not self.is_sqlite and self._driver_reader is None:
            await self._driver_reads.start()
            self._driver_reader = self._driver_reads

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute(select(numbering.c.id).limit(1)).all())

    async def close(self) -> None:
        if self._loop_reader is not None:
            self._loop_reader.close()
            self._loop_reader = None
        if self._engine is not None:
            if self._driver_reader is not None:
                await self._driver_reader.close()
                self._driver_reader = None
            await self._engine.dispose()
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._write_thread, self._writer.dispose)
        await loop.run_in_executor(self._read_threads, self._reader.dispose)
        self._write_thread.shutdown()
        self._read_threads.shutdown()

    async def read(self, operation: Callable[[Connection], R]) -> R:
        """Run `operation` on a connection outside any explicit transaction."""
        return await self._run(operation, write=False)

    async def write(self, operation: Callable[[Connection], R]) -> R:
        """Run `operation` in one transaction, committed when it returns."""
        return await self._run(operation, write=True)

    async def _run(self, operation: Callable[[Connection], R], write: bool) -> R:
        try:
            if self._engine is None:
                executor = self._write_thread if write else self._read_threads
                engine = self._writer if write else self._reader
                return await asyncio.get_running_loop().run_in_executor(
                    executor, _in_thread, engine, write, operation
                )
            if write:
                async with self._engine.begin() as conn:
                    return await conn.run_sync(operation)
            try:
                async with self._engine.connect() as conn:
                    return await conn.run_sync(operation)
            except DBAPIError as error:
                if not error.connection_invalidated:
                    raise
            # A pooled connection the server had closed (it restarted, or an idle timeout):
            # the pool let go of them all; a read is read again on a new one. (Connections
            # are not pinged before use: a round trip more for every read.)
            async with self._engine.connect() as conn:
                return await conn.run_sync(operation)
        except IntegrityError:
            raise
        except DBAPIError as error:
            raise _unavailable(error) from error

    async def _bounded(self, statement: Any, params: dict[str, Any], rows: int) -> list[Any]:
        """The rows, raw (times as the driver gives them), of a statement made once that reads
        at most `rows` rows through an index: compiled once, run without SQLAlchemy's
        per-statement work; on SQLite on the loop's thread unless large or kept waiting."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            dialect = self._engine.dialect if self._engine is not None else self._reader.dialect
            made = statement.compile(dialect=dialect)
            order = tuple(made.positiontup or ()) if made.positional else None
            compiled = self._compiled[statement] = (made.string, order, dict(made.params))
        sql, order, defaults = compiled
        given = {**defaults, **params}
        values = tuple(given[name] for name in order) if order is not None else given
        if self._driver_reader is not None:
            for callback in self._heard:
                callback(sql)
            return await self._driver_reader.rows(sql, values)
        if self._loop_reader is not None and rows <= _LOOP_ROWS:
            for callback in self._heard:
                callback(sql)
            try:
                return self._loop_reader.rows(sql, values)
            except sqlite3.OperationalError:
                pass  # busy (or worse): the read threads wait, or say what is wrong
        return await self._run(lambda conn: list(conn.exec_driver_sql(sql, values)), write=False)

    # -- applications --------------------------------------------------------------------------

    async def insert_application(self, token: str, name: str) -> Application:
        def insert(conn: Connection) -> int:
            result = conn.execute(
                applications.insert().values(token=token, name=name, chats_count=0)
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

        try:
            app_id = await self.write(insert)
        except IntegrityError as error:
            if _is_unique_violation(error):
                raise TokenClash() from error
            raise
        return Application(id=app_id, token=token, name=name, chats_count=0)

    async def rename_application(self, token: str, name: str) -> Application | None:
        def rename(conn: Connection) -> Application | None:
            result = conn.execute(
                update(applications).where(applications.c.token == token).values(name=name)
            )
            if result.rowcount == 0:
                return None
            row = conn.execute(select(applications).where(applications.c.token == token)).one()
            return _application(row)

        return await self.write(rename)

    async def applications_by_token(self, tokens: Sequence[str]) -> dict[str, Application]:
        query = select(applications).where(applications.c.token.in_(tokens))
        return await self.read(lambda conn: {r.token: _application(r) for r in conn.execute(query)})

    async def list_applications(
        self, after_id: int | None, limit: int, backward: bool = False
    ) -> list[Application]:
        order = applications.c.id.desc() if backward else applications.c.id
        query = select(applications).order_by(order).limit(limit)
        if after_id is not None:
            beyond = applications.c.id < after_id if backward else applications.c.id > after_id
            query = query.where(beyond)
        return await self.read(lambda conn: [_application(r) for r in conn.execute(query)])

    # -- chats and messages --------------------------------------------------------------------

    async def chats_by_number(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Chat]:
        if not keys:
            return {}
        if len(keys) == 1:  # the usual case, from a statement made once
            [(app_id, number)] = keys
            found = await self._bounded(_ONE_CHAT, {"app": app_id, "number": number}, 1)
            return {(row[1], row[2]): _chat(row) for row in found}
        query = select(*_CHAT_COLUMNS).where(
            tuple_(chats.c.application_id, chats.c.number).in_(keys)
        )
        return await self.read(lambda conn: {(r[1], r[2]): _chat(r) for r in conn.execute(query)})

    async def list_chats(
        self,
        application_ids: Sequence[int],
        after: int | None,
        limit: int,
        backward: bool = False,
    ) -> dict[int, list[Chat]]:
        query, params = _pages_query(chats, application_ids, after, limit, backward)
        found: dict[int, list[Chat]] = {app_id: [] for app_id in application_ids}
        for row in await self._bounded(query, params, len(application_ids) * limit):
            found[row[1]].append(_chat(row))
        return found

    async def messages_by_number(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Message]:
        if not keys:
            return {}
        query = select(*_MESSAGE_COLUMNS).where(
            tuple_(messages.c.chat_id, messages.c.number).in_(keys)
        )
        return await self.read(
            lambda conn: {(r[0], r[1]): _message(r) for r in conn.execute(query)}
        )

    async def list_messages(
        self, chat_ids: Sequence[int], after: int | None, limit: int, backward: bool = False
    ) -> dict[int, list[Message]]:
        query, params = _pages_query(messages, chat_ids, after, limit, backward)
        found: dict[int, list[Message]] = {chat_id: [] for chat_id in chat_ids}
        for row in await self._bounded(query, params, len(chat_ids) * limit):
            found[row[0]].append(_message(row))
        return found

    async def max_chat_number(self, application_id: int) -> int:
        query = select(func.max(chats.c.number)).where(chats.c.application_id == application_id)
        return await self.read(lambda conn: int(conn.execute(query).scalar() or 0))

    async def message_revisions(
        self, application_id: int, chat_number: int, number: int
    ) -> tuple[int, int | None] | None:
        query = (
            select(messages.c.revision, messages.c.created_revision)
            .select_from(messages.join(chats))
            .where(
                chats.c.application_id == application_id,
                chats.c.number == chat_number,
                messages.c.number == number,
            )
        )
        row = await self.read(lambda conn: conn.execute(query).first())
        return None if row is None else (int(row.revision), row.created_revision)

    async def max_message_number(self, application_id: int, chat_number: int) -> int:
        query = (
            select(func.max(messages.c.number))
            .select_from(messages.join(chats))
            .where(chats.c.application_id == application_id, chats.c.number == chat_number)
        )
        return await self.read(lambda conn: int(conn.execute(query).scalar() or 0))

    # -- idempotency keys ----------------------------------------------------------------------

    async def claimed(self, application_id: int, key: str) -> Claimed | None:
        query = select(idempotency_keys).where(
            idempotency_keys.c.application_id == application_id,
            idempotency_keys.c.key == key,
            idempotency_keys.c.expires > now_micros(),
        )
        row = await self.read(lambda conn: conn.execute(query).first())
        return None if row is None else claimed_row(row)

    # -- the writer's transaction --------------------------------------------------------------

    async def apply(self, events: Sequence[Event]) -> Applied:
        try:
            return await self.write(lambda conn: _apply_batch(conn, events, not self.is_sqlite))
        except StatementError as error:  # a value the driver or the database refuses
            raise Unstorable() from error

    async def iter_messages(
        self, batch_size: int, changed_since: datetime | None = None
    ) -> AsyncIterator[list[IndexedMessage]]:
        """Every stored message in id order, `batch_size` at a time (for reindexing); with
        `changed_since` (MySQL), only those inserted or updated since then."""
        last_id = 0
        while True:
            query = (
                select(
                    messages.c.id,
                    messages.c.chat_id,
                    messages.c.number,
                    messages.c.body,
                    messages.c.revision,
                    messages.c.created_at,
                    messages.c.updated_at,
                )
                .where(messages.c.id > last_id)
                .order_by(messages.c.id)
                .limit(batch_size)
            )
            if changed_since is not None:
                query = query.where(text("changed_at >= :since").bindparams(since=changed_since))
            rows = await self.read(lambda conn, q=query: conn.execute(q).all())  # type: ignore[misc]
            if not rows:
                return
            last_id = rows[-1].id
            yield [
                IndexedMessage(r.chat_id, r.number, r.body, r.revision, r.created_at, r.updated_at)
                for r in rows
            ]

    async def clock(self) -> datetime:
        """The database server's time (what `messages.changed_at` is set from)."""
        now = select(func.now(6)) if not self.is_sqlite else select(func.current_timestamp())
        value = await self.read(lambda conn: conn.execute(now).scalar_one())
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

    async def count_messages(self) -> int:
        query = select(func.count()).select_from(messages)
        return await self.read(lambda conn: int(conn.execute(query).scalar_one()))


def _in_thread(engine: Engine, write: bool, operation: Callable[[Connection], R]) -> R:
    if write:
        with engine.begin() as conn:
            return operation(conn)
    with engine.connect() as conn:
        return operation(conn)


def _pages_query(
    table: Any, parent_ids: Sequence[int], after: int | None, limit: int, backward: bool = False
) -> tuple[Any, dict[str, Any]]:
    """The first `limit` rows after `after` of each parent (`backward`: the last `limit`
    before it, newest first), in one statement that reads only those rows: one index range
    scan per parent, stopped at `limit` (a window function over every row of every parent
    would cost the size of the largest). A statement made once for each number of parents,
    with its parameters."""
    parents = list(dict.fromkeys(parent_ids))
    key = (table.name, len(parents), after is not None, backward)
    query = _PAGES.get(key)
    if query is None:
        query = _PAGES[key] = _make_pages(table, len(parents), after is not None, backward)
    params: dict[str, Any] = {f"parent_{i}": parent for i, parent in enumerate(parents)}
    params["after"], params["limit"] = after, limit
    return query, params


def _make_pages(table: Any, parents: int, past: bool, backward: bool) -> Any:
    if parents == 1:
        return _page(table, bindparam("parent_0"), past, backward)
    # Each page wrapped as a derived table: SQLite takes no LIMIT inside a compound member.
    pages = [
        _page(table, bindparam(f"parent_{i}"), past, backward).subquery().select()
        for i in range(parents)
    ]
    parent = _PARENT[table.name]
    in_order: Any = literal_column("number")
    return union_all(*pages).order_by(
        literal_column(parent.name), in_order.desc() if backward else in_order
    )


def _page(table: Any, parent_id: Any, past: bool, backward: bool) -> Any:
    number = table.c.number
    query = select(*_COLUMNS[table.name]).where(_PARENT[table.name] == parent_id)
    if past:
        after: Any = bindparam("after")
        query = query.where(number < after if backward else number > after)
    return query.order_by(number.desc() if backward else number).limit(bindparam("limit"))


# The columns `_chat` and `_message` read, by position; a row's parent is its second column
# for chats, its first for messages.
_CHAT_COLUMNS = (
    chats.c.id,
    chats.c.application_id,
    chats.c.number,
    chats.c.messages_count,
    chats.c.created_at,
)
_MESSAGE_COLUMNS = (
    messages.c.chat_id,
    messages.c.number,
    messages.c.body,
    messages.c.created_at,
    messages.c.updated_at,
)
_COLUMNS = {"chats": _CHAT_COLUMNS, "messages": _MESSAGE_COLUMNS}
_PARENT = {"chats": chats.c.application_id, "messages": messages.c.chat_id}

# Statements made once: pages by (table, parents, past a cursor, backward); a chat by number.
_PAGES: dict[tuple[str, int, bool, bool], Any] = {}
_ONE_CHAT = select(*_CHAT_COLUMNS).where(
    chats.c.application_id == bindparam("app"), chats.c.number == bindparam("number")
)


def _application_epochs(conn: Connection, app_ids: set[int], locking: bool) -> dict[int, int]:
    """The applications' own epochs; with `locking`, their rows locked in id order."""
    query = select(applications.c.id, applications.c.epoch).where(
        applications.c.id.in_(sorted(app_ids))
    )
    if locking:
        query = query.order_by(applications.c.id).with_for_update()
    return {int(row.id): int(row.epoch) for row in conn.execute(query).all()}


def _apply_batch(conn: Connection, events: Sequence[Event], locking: bool) -> Applied:
    """Apply a batch in the caller's transaction: idempotent, order-insensitive, exact counts.

    Sync SQLAlchemy Core, so that one implementation serves a SQLite connection in the writer
    thread and a MySQL connection through `AsyncConnection.run_sync`.
    """
    # A shared lock on the numbering row: a recovery retiring an epoch waits for this batch,
    # and no batch after it applies a draw of the retired epoch. (SQLite's BEGIN IMMEDIATE
    # already made this transaction the only writer.)
    # Each application's row too, locked in id order (no deadlocks): it serialises writers
    # per application, and holds its own epoch (Redis Cluster), retired likewise.
    epoch = 0  # writes that carry no epoch (the embedded mode's) need not read it
    epochs: dict[int, int] = {}
    if any(e.epoch for e in events):
        epoch_query = select(numbering.c.epoch).where(numbering.c.id == 1)
        if locking:
            epoch_query = epoch_query.with_for_update(read=True)
        epoch = int(conn.execute(epoch_query).scalar() or 0)
        epochs = _application_epochs(conn, {e.application_id for e in events}, locking)
    set_aside: list[tuple[Event, str]] = []
    accepted: list[Event] = []
    for e in events:
        retired = max(epoch, epochs.get(e.application_id, 0))
        if 0 < e.epoch < retired:
            set_aside.append((e, f"drawn in numbering epoch {e.epoch}, retired (now {retired})"))
        else:
            accepted.append(e)
    # When each chat was created, as far as the batch knows: its create's time, else its first
    # message's (a message may arrive before its chat's create, never be accepted before it).
    now = now_micros()
    chat_times: dict[tuple[int, int], int] = {}
    for e in accepted:
        key, at = (e.application_id, e.chat_number), e.at or now
        chat_times[key] = min(chat_times.get(key, at), at)
    chat_keys = set(chat_times)
    app_ids = {app_id for app_id, _ in chat_keys} - epochs.keys()
    if locking and app_ids:  # not locked above (writes that carry no epoch)
        _application_epochs(conn, app_ids, locking)
    created_chats = {
        (e.application_id, e.chat_number): e.at or now
        for e in accepted
        if isinstance(e, ChatCreated)
    }
    chat_ids, new_chats = _ensure_chats(conn, chat_times, created_chats)
    written = _write_messages(
        conn, chat_ids, [e for e in accepted if isinstance(e, MessageWritten)], set_aside, now
    )
    refused = {id(e) for e, _ in set_aside}
    _keep_claims(conn, [e for e in accepted if e.claim is not None and id(e) not in refused], now)
    if set_aside:
        conn.execute(
            update(numbering)
            .where(numbering.c.id == 1)
            .values(set_aside=numbering.c.set_aside + len(set_aside))
        )
    return Applied(
        written.indexed,
        set_aside,
        created=written.created,
        updated=written.updated,
        chats=[
            StoredChat(app_id, number, chat_ids[(app_id, number)], instant(chat_times[key]))
            for key in new_chats
            for app_id, number in (key,)
        ],
    )


def _ensure_chats(
    conn: Connection, times: dict[tuple[int, int], int], created: dict[tuple[int, int], int]
) -> tuple[dict[tuple[int, int], int], list[tuple[int, int]]]:
    """Chat ids for the keys of `times`, inserting the chats not persisted yet (a message may
    come first) created at their time; and the keys it inserted, in order. A chat's create
    arriving after a message inserted it (`created`: their times) sets its time."""
    ids = _chat_ids(conn, set(times))
    missing = sorted(times.keys() - ids.keys())
    late = sorted(key for key in created if key in ids)
    if late:
        conn.execute(
            update(chats)
            .where(chats.c.id == bindparam("chat"), chats.c.created_at > bindparam("at"))
            .values(created_at=bindparam("at")),
            [{"chat": ids[key], "at": instant(created[key])} for key in late],
        )
    if missing:
        conn.execute(
            chats.insert(),
            [
                {
                    "application_id": a,
                    "number": n,
                    "messages_count": 0,
                    "created_at": instant(times[(a, n)]),
                }
                for a, n in missing
            ],
        )
        per_app = Counter(app_id for app_id, _ in missing)
        conn.execute(
            update(applications)
            .where(applications.c.id == bindparam("app_id"))
            .values(chats_count=applications.c.chats_count + bindparam("added")),
            [{"app_id": a, "added": n} for a, n in sorted(per_app.items())],
        )
        ids |= _chat_ids(conn, set(missing))
    return ids, missing


def _chat_ids(conn: Connection, keys: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    if not keys:
        return {}
    query = select(chats.c.id, chats.c.application_id, chats.c.number).where(
        tuple_(chats.c.application_id, chats.c.number).in_(sorted(keys))
    )
    return {(r.application_id, r.number): r.id for r in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class _Written:
    indexed: list[IndexedMessage]  # every message the batch names, as it now stands
    created: list[IndexedMessage]  # rows this transaction inserted
    updated: list[IndexedMessage]  # rows whose body this transaction replaced


def _write_messages(
    conn: Connection,
    chat_ids: dict[tuple[int, int], int],
    written: list[MessageWritten],
    set_aside: list[tuple[Event, str]],
    now: int,
) -> _Written:
    """Upsert by revision; a create whose number holds a message of another draw is refused
    (appended to `set_aside`) instead of overwriting it. A message's `created_at` is its
    create's time (an update's until a create that arrives late sets it), its `updated_at`
    the time of the write whose body it holds."""
    if not written:
        return _Written([], [], [])
    keyed: dict[tuple[int, int], list[MessageWritten]] = {}
    for e in written:
        keyed.setdefault((chat_ids[(e.application_id, e.chat_number)], e.number), []).append(e)
    stored_query = select(
        messages.c.chat_id,
        messages.c.number,
        messages.c.revision,
        messages.c.body,
        messages.c.created_revision,
        messages.c.created_at,
        messages.c.updated_at,
    ).where(tuple_(messages.c.chat_id, messages.c.number).in_(sorted(keyed)))
    rows = {(r.chat_id, r.number): r for r in conn.execute(stored_query)}
    wanted: dict[tuple[int, int], MessageWritten] = {}
    # The draw (create revision) that owns each number, and when it was accepted.
    creators: dict[tuple[int, int], tuple[int, int]] = {}
    for key, found in keyed.items():
        row = rows.get(key)
        owner = row.created_revision if row is not None else None
        for e in sorted(found, key=lambda e: e.revision):
            if e.created:
                if owner is None:
                    owner = e.revision
                    if row is None or row.created_revision is None:
                        creators[key] = (e.revision, e.at or now)
                elif owner != e.revision:
                    set_aside.append((e, f"message {e.number} already holds another draw's create"))
                    continue
            if key not in wanted or wanted[key].revision < e.revision:
                wanted[key] = e
    stored = {key: row.revision for key, row in rows.items()}
    new = [key for key in sorted(wanted) if key not in stored]
    newer = [key for key in sorted(wanted) if key in stored and stored[key] < wanted[key].revision]
    # Each message's times once this transaction is done.
    times: dict[tuple[int, int], tuple[datetime, datetime]] = {
        key: (row.created_at, row.updated_at) for key, row in rows.items()
    }
    for key in new:
        at = instant(wanted[key].at or now)
        times[key] = (instant(creators[key][1]) if key in creators else at, at)
    for key in newer:
        times[key] = (times[key][0], instant(wanted[key].at or now))
    late = sorted(key for key in creators if key in rows)  # creates after an update's insert
    for key in late:
        times[key] = (instant(creators[key][1]), times[key][1])
    if new:
        conn.execute(
            messages.insert(),
            [
                {
                    "chat_id": c,
                    "number": n,
                    "body": wanted[(c, n)].body,
                    "revision": wanted[(c, n)].revision,
                    "created_revision": creators[(c, n)][0] if (c, n) in creators else None,
                    "created_at": times[(c, n)][0],
                    "updated_at": times[(c, n)][1],
                }
                for c, n in new
            ],
        )
        per_chat = Counter(chat_id for chat_id, _ in new)
        conn.execute(
            update(chats)
            .where(chats.c.id == bindparam("chat"))
            .values(messages_count=chats.c.messages_count + bindparam("added")),
            [{"chat": c, "added": n} for c, n in sorted(per_chat.items())],
        )
    if newer:
        conn.execute(
            update(messages)
            .where(
                messages.c.chat_id == bindparam("chat"),
                messages.c.number == bindparam("num"),
                messages.c.revision < bindparam("rev"),
            )
            .values(
                body=bindparam("new_body"), revision=bindparam("rev"), updated_at=bindparam("at")
            ),
            [
                {
                    "chat": c,
                    "num": n,
                    "new_body": wanted[(c, n)].body,
                    "rev": wanted[(c, n)].revision,
                    "at": times[(c, n)][1],
                }
                for c, n in newer
            ],
        )
    if late:
        conn.execute(
            update(messages)
            .where(messages.c.chat_id == bindparam("chat"), messages.c.number == bindparam("num"))
            .values(created_revision=bindparam("owner"), created_at=bindparam("at")),
            [
                {"chat": c, "num": n, "owner": creators[(c, n)][0], "at": times[(c, n)][0]}
                for c, n in late
            ],
        )

    changed = {*new, *newer}

    def now_standing(key: tuple[int, int]) -> IndexedMessage:
        source = wanted[key] if key in changed else rows[key]
        return IndexedMessage(key[0], key[1], source.body, source.revision, *times[key])

    # Every message of the batch as it now stands, written or not: a replay after a worker
    # died between the commit and the indexing must index again (external versions make a
    # repeat harmless).
    return _Written(
        [now_standing(key) for key in sorted(wanted)],
        [now_standing(key) for key in new],
        [now_standing(key) for key in newer],
    )


_PURGE_EVERY = 60.0  # seconds between deletions of expired claims, per process
_purged = [0.0]


def _keep_claims(conn: Connection, claimed: Sequence[Event], now: int) -> None:
    """Store the claims of a batch's creates sent with idempotency keys (a claim stored
    already, by a replay or a retry's resubmission, stays as it is); now and then, forget
    the expired ones."""
    if not claimed:
        return
    rows = []
    for e in claimed:
        assert e.claim is not None
        at = e.at or now
        rows.append(
            {
                "application_id": e.application_id,
                "key": e.claim.key,
                "fingerprint": e.claim.fingerprint,
                "chat_number": e.chat_number if isinstance(e, MessageWritten) else 0,
                "number": e.number if isinstance(e, MessageWritten) else e.chat_number,
                "revision": e.revision if isinstance(e, MessageWritten) else 0,
                "epoch": e.epoch,
                "at": at,
                "expires": at + e.claim.window * 1_000_000,
            }
        )
    statement = (
        idempotency_keys.insert()
        .prefix_with("OR IGNORE", dialect="sqlite")
        .prefix_with("IGNORE", dialect="mysql")
        .prefix_with("IGNORE", dialect="mariadb")
    )
    conn.execute(statement, rows)
    if time.monotonic() - _purged[0] > _PURGE_EVERY:
        _purged[0] = time.monotonic()
        conn.execute(idempotency_keys.delete().where(idempotency_keys.c.expires <= now))


def claimed_row(row: Any) -> Claimed:
    return Claimed(
        application_id=row.application_id,
        key=row.key,
        fingerprint=row.fingerprint,
        chat_number=row.chat_number,
        number=row.number,
        revision=row.revision,
        epoch=row.epoch,
        at=row.at,
        expires=row.expires,
    )


def _application(row: Row[Any]) -> Application:
    return Application(id=row.id, token=row.token, name=row.name, chats_count=row.chats_count)


def _utc(value: datetime | str) -> datetime:
    """A time column's value as an aware UTC datetime: as SQLAlchemy gives it, or raw (SQLite's
    ISO text, MySQL's naive datetime). (`replace(tzinfo=)` costs five times the parse.)"""
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")
    return value if value.tzinfo is UTC else value.replace(tzinfo=UTC)


def _chat(row: Any) -> Chat:
    """A chat from a row of `_CHAT_COLUMNS`."""
    return Chat(
        id=row[0],
        application_id=row[1],
        number=row[2],
        messages_count=row[3],
        created_at=_utc(row[4]),
    )


def _message(row: Any) -> Message:
    """A message from a row of `_MESSAGE_COLUMNS`; SQLite's times keep their text too (as
    `iso` writes it: `2026-11-30 02:21:11.123456` is `2026-11-30T02:21:11.123456Z`)."""
    created_at, updated_at = row[3], row[4]
    if type(created_at) is not str:  # MySQL's
        created = _utc(created_at)
        updated = created if updated_at == created_at else _utc(updated_at)
        return Message(row[1], row[2], created, updated)
    created = _from_iso(created_at + "+00:00")
    text = f"{created_at[:10]}T{created_at[11:]}Z" if len(created_at) == 26 else None
    if updated_at == created_at:  # never edited: parsed once
        return Message(row[1], row[2], created, created, text)
    updated_text = f"{updated_at[:10]}T{updated_at[11:]}Z" if len(updated_at) == 26 else None
    return Message(row[1], row[2], created, _from_iso(updated_at + "+00:00"), text, updated_text)


_from_iso = datetime.fromisoformat
