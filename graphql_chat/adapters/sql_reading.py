"""What users have read, and their chats by activity, as the SQL store keeps them
(`ReadingRecords`). The batch that stores messages keeps each member's row of a chat level
with the chat's newest message (`sql_batch`), so a user's chats are ordered and counted
unread from their own rows, by index, however many chats the application holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from graphql_chat.adapters.sql_database import Database
from graphql_chat.adapters.sql_users import MEMBER, membership
from graphql_chat.ports import Membership
from graphql_chat.tables import chat_members, chats, messages

_LOW = (1 << 64) - 1


def _others(user_id: str) -> Any:
    """Messages someone else wrote (the backend's included)."""
    return or_(messages.c.author.is_(None), messages.c.author != user_id)


class SqlReading:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def inbox(
        self, application_id: int, user_id: str, after: int | None, limit: int, backward: bool
    ) -> list[Membership]:
        active, key = chat_members.c.active_at, chat_members.c.id
        query = select(*MEMBER).where(
            chat_members.c.application_id == application_id, chat_members.c.user_id == user_id
        )
        if after is not None:
            at, row = after >> 64, after & _LOW
            if backward:
                query = query.where(or_(active > at, and_(active == at, key > row)))
            else:
                query = query.where(or_(active < at, and_(active == at, key < row)))
        order = (active, key) if backward else (active.desc(), key.desc())
        query = query.order_by(*order).limit(limit)
        return await self._db.read(lambda conn: [membership(r) for r in conn.execute(query)])

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

    async def unread_counts(
        self, application_id: int, user_id: str, markers: Mapping[int, int]
    ) -> dict[int, int]:
        if not markers:
            return {}

        def count(conn: Connection) -> dict[int, int]:
            found: dict[int, int] = {}
            for number, marker in sorted(markers.items()):
                chat = select(chats.c.id).where(
                    chats.c.application_id == application_id, chats.c.number == number
                )
                query = select(func.count()).where(
                    messages.c.chat_id == chat.scalar_subquery(),
                    messages.c.number > marker,
                    _others(user_id),
                )
                found[number] = int(conn.execute(query).scalar_one())
            return found

        return await self._db.read(count)

    async def unread_totals(self, application_id: int, user_id: str, cap: int) -> tuple[int, int]:
        mine = (chat_members.c.application_id == application_id) & (
            chat_members.c.user_id == user_id
        )
        unread = chat_members.c.top_number > chat_members.c.last_read_number
        chats_query = select(func.count()).where(mine, unread)
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
            .where(mine, unread, _others(user_id))
            .limit(cap)
            .subquery()
        )
        messages_query = select(func.count()).select_from(rows)

        def count(conn: Connection) -> tuple[int, int]:
            return (
                int(conn.execute(chats_query).scalar_one()),
                int(conn.execute(messages_query).scalar_one()),
            )

        return await self._db.read(count)
