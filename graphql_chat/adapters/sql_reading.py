"""What users have read, and their chats by activity, as the SQL store keeps them
(`ReadingRecords`). The batch that stores messages keeps each member's row of a chat level
with the chat's newest message (`sql_batch`), so a user's chats are ordered and counted
unread from their own rows, by index, however many chats the application holds."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Integer,
    and_,
    bindparam,
    func,
    or_,
    select,
    union_all,
)

from graphql_chat.adapters.sql_database import Database
from graphql_chat.adapters.sql_rows import CHAT_COLUMNS, chat_row
from graphql_chat.adapters.sql_users import MEMBER, membership
from graphql_chat.domain import Chat
from graphql_chat.ports import Membership
from graphql_chat.tables import chat_members, chats, messages

_LOW = (1 << 64) - 1


def _others(user: Any) -> Any:
    """Messages someone else than `user` wrote (the backend's included)."""
    return or_(messages.c.author.is_(None), messages.c.author != user)


@functools.cache
def _inbox_statement(after: bool, backward: bool) -> Any:
    """A page of a user's chats by activity, with the chats as stored; made once per shape.
    The page's rows are found first from the index alone (application, user, activity, id),
    as a range from the cursor, and only they are read and joined: on the whole statement
    MariaDB reads the user's rows from the start of the index up to the cursor."""
    active, key = chat_members.c.active_at, chat_members.c.id
    found = select(key).where(
        chat_members.c.application_id == bindparam("app"),
        chat_members.c.user_id == bindparam("user"),
    )
    if after:
        at, row = bindparam("at", type_=BigInteger), bindparam("row", type_=BigInteger)
        if backward:
            found = found.where(active >= at, or_(active > at, and_(active == at, key > row)))
        else:
            found = found.where(active <= at, or_(active < at, and_(active == at, key < row)))
    order = (active, key) if backward else (active.desc(), key.desc())
    page = found.order_by(*order).limit(bindparam("limit", type_=Integer)).subquery()
    return (
        select(*MEMBER, *CHAT_COLUMNS)
        .select_from(
            page.join(chat_members, chat_members.c.id == page.c.id).outerjoin(
                chats,
                (chats.c.application_id == chat_members.c.application_id)
                & (chats.c.number == chat_members.c.chat_number),
            )
        )
        .order_by(*order)
    )


@functools.lru_cache(maxsize=256)
def _unread_statement(chats_counted: int) -> Any:
    """How many messages others wrote above a marker, in each of `chats_counted` chats (by
    id), in one statement; made once per count."""
    parts = [
        select(bindparam(f"c{i}", type_=BigInteger), func.count())
        .select_from(messages)
        .where(
            messages.c.chat_id == bindparam(f"c{i}", type_=BigInteger),
            messages.c.number > bindparam(f"m{i}", type_=Integer),
            _others(bindparam("user")),
        )
        for i in range(chats_counted)
    ]
    return union_all(*parts) if len(parts) > 1 else parts[0]


class SqlReading:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def inbox(
        self, application_id: int, user_id: str, after: int | None, limit: int, backward: bool
    ) -> list[tuple[Membership, Chat | None]]:
        params: dict[str, Any] = {"app": application_id, "user": user_id, "limit": limit}
        if after is not None:
            params.update(at=after >> 64, row=after & _LOW)
        statement = _inbox_statement(after is not None, backward)
        width = len(MEMBER)
        return [
            (membership(r[:width]), None if r[width] is None else chat_row(r[width:]))
            for r in await self._db.bounded(statement, params, limit)
        ]

    async def memberships(
        self, application_id: int, user_id: str, chat_numbers: Sequence[int]
    ) -> dict[int, Membership]:
        if not chat_numbers:
            return {}
        query = select(*MEMBER).where(
            chat_members.c.application_id == application_id,
            chat_members.c.user_id == user_id,
            chat_members.c.chat_number.in_(sorted(set(chat_numbers))),
        )

        def read(conn: Connection) -> dict[int, Membership]:
            return {m.chat_number: m for m in map(membership, conn.execute(query))}

        return await self._db.read(read)

    async def unread_counts(self, user_id: str, markers: Mapping[int, int]) -> dict[int, int]:
        if not markers:
            return {}
        params: dict[str, Any] = {"user": user_id}
        for i, (chat_id, marker) in enumerate(sorted(markers.items())):
            params.update({f"c{i}": chat_id, f"m{i}": marker})
        statement = _unread_statement(len(markers))
        rows = await self._db.bounded(statement, params, len(markers))
        return {int(chat_id): int(count) for chat_id, count in rows}

    async def unread_totals(self, application_id: int, user_id: str, cap: int) -> tuple[int, int]:
        params = {"app": application_id, "user": user_id, "cap": cap}
        [(chats_unread, messages_unread)] = await self._db.bounded(_TOTALS, params, 1)
        return int(chats_unread), int(messages_unread)


def _totals() -> Any:
    """A user's chats with unread messages, from their own rows (the workers keep each level
    with its chat's newest number), and those messages, counted up to `cap`."""
    mine = (chat_members.c.application_id == bindparam("app")) & (
        chat_members.c.user_id == bindparam("user")
    )
    unread = chat_members.c.top_number > chat_members.c.last_read_number
    chats_unread = select(func.count()).select_from(chat_members).where(mine, unread)
    rows = (
        select(messages.c.id)
        .select_from(chat_members)
        .join(
            chats,
            (chats.c.application_id == chat_members.c.application_id)
            & (chats.c.number == chat_members.c.chat_number),
        )
        .join(
            messages,
            (messages.c.chat_id == chats.c.id)
            & (messages.c.number > chat_members.c.last_read_number),
        )
        .where(mine, unread, _others(bindparam("user")))
        .limit(bindparam("cap", type_=Integer))
        # From the user's own rows out, as written: MariaDB would start from every chat of
        # the application.
        .prefix_with("STRAIGHT_JOIN", dialect="mysql")
        .prefix_with("STRAIGHT_JOIN", dialect="mariadb")
        .subquery()
    )
    messages_unread = select(func.count()).select_from(rows)
    return select(chats_unread.scalar_subquery(), messages_unread.scalar_subquery())


_TOTALS = _totals()
