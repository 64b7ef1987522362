"""The store port on SQLAlchemy Core, over a `Database` (`sql_database`): SQLite embedded,
MySQL (asyncmy) distributed, one module each. The reads a page needs are bounded reads
(`sql_pages`), rows become the domain's objects in `sql_rows`, and a batch is written by
`sql_batch` (`SqlBatches`, which the writer holds); the numbering ledger on the same
database is `sql_ledger`."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError

from graphql_chat.adapters.mysql_database import MysqlDatabase
from graphql_chat.adapters.sql_batch import SqlBatches
from graphql_chat.adapters.sql_database import Database
from graphql_chat.adapters.sql_pages import ONE_CHAT, pages_query
from graphql_chat.adapters.sql_reading import SqlReading
from graphql_chat.adapters.sql_rows import (
    CHAT_COLUMNS,
    MESSAGE_COLUMNS,
    application_row,
    chat_row,
    claimed_row,
    message_row,
)
from graphql_chat.adapters.sql_users import SqlUsers
from graphql_chat.adapters.sqlite_database import SqliteDatabase
from graphql_chat.domain import (
    Application,
    Chat,
    Event,
    Message,
    new_public_id,
    new_signing_secret,
    now_micros,
)
from graphql_chat.errors import TokenClash
from graphql_chat.ports import Applied, Claimed, IndexedMessage
from graphql_chat.tables import applications, chats, idempotency_keys, messages, numbering

R = TypeVar("R")


def open_database(url: str, synchronous: str = "FULL") -> Database:
    """The database a URL names: SQLite (`sqlite+aiosqlite:///...`) or MySQL."""
    if url.startswith("sqlite"):
        return SqliteDatabase(url, synchronous)
    return MysqlDatabase(url)


@functools.lru_cache(maxsize=256)
def _by_number(count: int) -> Any:
    """`count` messages by (chat id, number): one statement, made once per count."""
    # Each pair spelled out: both engines look each one up in the (chat id, number) index,
    # which SQLite does not for a row-value IN list of parameters.
    pairs = [
        and_(
            messages.c.chat_id == bindparam(f"c{i}", type_=BigInteger),
            messages.c.number == bindparam(f"n{i}", type_=Integer),
        )
        for i in range(count)
    ]
    return select(*MESSAGE_COLUMNS).where(or_(*pairs))


class SqlStore:
    def __init__(self, url: str, synchronous: str = "FULL") -> None:
        self.url = url
        self._db = open_database(url, synchronous)
        self.is_sqlite = self._db.is_sqlite
        self.batches = SqlBatches(self._db)  # the writer's part, which it may hold alone
        self.users = SqlUsers(self._db)  # signing secrets, membership, revoked tokens
        self.reading = SqlReading(self._db)  # read markers, chats by activity, unread counts

    def on_statement(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Have `callback` hear the SQL of every statement run from now on, on any connection
        (for instrumentation); returns what stops it."""
        return self._db.on_statement(callback)

    async def start(self) -> None:
        await self.read(lambda conn: conn.execute(select(func.count()).select_from(applications)))
        await self._db.start()

    async def ping(self) -> None:
        await self.read(lambda conn: conn.execute(select(numbering.c.id).limit(1)).all())

    async def close(self) -> None:
        await self._db.close()

    async def read(self, operation: Callable[[Connection], R]) -> R:
        """Run `operation` on a connection outside any explicit transaction."""
        return await self._db.read(operation)

    async def write(self, operation: Callable[[Connection], R]) -> R:
        """Run `operation` in one transaction, committed when it returns."""
        return await self._db.write(operation)

    # -- applications --------------------------------------------------------------------------

    async def insert_application(self, token: str, name: str) -> Application:
        public_id = new_public_id()

        def insert(conn: Connection) -> int:
            result = conn.execute(
                applications.insert().values(
                    token=token,
                    name=name,
                    chats_count=0,
                    public_id=public_id,
                    signing_secret=new_signing_secret(),
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

        try:
            app_id = await self.write(insert)
        except IntegrityError as error:
            if self._db.is_unique_violation(error):
                raise TokenClash() from error
            raise
        return Application(id=app_id, token=token, name=name, chats_count=0, public_id=public_id)

    async def rename_application(self, token: str, name: str) -> Application | None:
        def rename(conn: Connection) -> Application | None:
            result = conn.execute(
                update(applications).where(applications.c.token == token).values(name=name)
            )
            if result.rowcount == 0:
                return None
            row = conn.execute(select(applications).where(applications.c.token == token)).one()
            return application_row(row)

        return await self.write(rename)

    async def applications_by_token(self, tokens: Sequence[str]) -> dict[str, Application]:
        query = select(applications).where(applications.c.token.in_(tokens))
        return await self.read(
            lambda conn: {r.token: application_row(r) for r in conn.execute(query)}
        )

    async def applications_by_id(self, ids: Sequence[int]) -> dict[int, Application]:
        if not ids:
            return {}
        query = select(applications).where(applications.c.id.in_(ids))
        return await self.read(lambda conn: {r.id: application_row(r) for r in conn.execute(query)})

    async def list_applications(
        self, after_id: int | None, limit: int, backward: bool = False
    ) -> list[Application]:
        order = applications.c.id.desc() if backward else applications.c.id
        query = select(applications).order_by(order).limit(limit)
        if after_id is not None:
            beyond = applications.c.id < after_id if backward else applications.c.id > after_id
            query = query.where(beyond)
        return await self.read(lambda conn: [application_row(r) for r in conn.execute(query)])

    # -- chats and messages --------------------------------------------------------------------

    async def chats_by_number(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Chat]:
        if not keys:
            return {}
        if len(keys) == 1:  # the usual case, from a statement made once
            [(app_id, number)] = keys
            found = await self._db.bounded(ONE_CHAT, {"app": app_id, "number": number}, 1)
            return {(row[1], row[2]): chat_row(row) for row in found}
        query = select(*CHAT_COLUMNS).where(
            tuple_(chats.c.application_id, chats.c.number).in_(keys)
        )
        return await self.read(
            lambda conn: {(r[1], r[2]): chat_row(r) for r in conn.execute(query)}
        )

    async def list_chats(
        self,
        application_ids: Sequence[int],
        after: int | None,
        limit: int,
        backward: bool = False,
    ) -> dict[int, list[Chat]]:
        query, params = pages_query(chats, application_ids, after, limit, backward)
        found: dict[int, list[Chat]] = {app_id: [] for app_id in application_ids}
        for row in await self._db.bounded(query, params, len(application_ids) * limit):
            found[row[1]].append(chat_row(row))
        return found

    async def messages_by_number(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Message]:
        if not keys:
            return {}
        wanted = list(dict.fromkeys(keys))
        params: dict[str, Any] = {}
        for i, (chat_id, number) in enumerate(wanted):
            params.update({f"c{i}": chat_id, f"n{i}": number})
        found = await self._db.bounded(_by_number(len(wanted)), params, len(wanted))
        return {(r[0], r[1]): message_row(r) for r in found}

    async def list_messages(
        self, chat_ids: Sequence[int], after: int | None, limit: int, backward: bool = False
    ) -> dict[int, list[Message]]:
        query, params = pages_query(messages, chat_ids, after, limit, backward)
        found: dict[int, list[Message]] = {chat_id: [] for chat_id in chat_ids}
        for row in await self._db.bounded(query, params, len(chat_ids) * limit):
            found[row[0]].append(message_row(row))
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
        return await self.batches.apply(events)

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
                    messages.c.author,
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
                IndexedMessage(
                    r.chat_id, r.number, r.body, r.revision, r.created_at, r.updated_at, r.author
                )
                for r in rows
            ]

    async def clock(self) -> datetime:
        """The database server's time (what `messages.changed_at` is set from)."""
        now = self._db.now()
        value = await self.read(lambda conn: conn.execute(now).scalar_one())
        return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))

    async def count_messages(self) -> int:
        query = select(func.count()).select_from(messages)
        return await self.read(lambda conn: int(conn.execute(query).scalar_one()))
