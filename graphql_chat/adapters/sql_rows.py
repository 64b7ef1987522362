"""SQL rows as the domain's objects: the columns a page's statements read, by position, and
how each row becomes an application, a chat, a message or a claim."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from graphql_chat.domain import Application, Chat, Message
from graphql_chat.ports import Claimed
from graphql_chat.tables import chats, messages

# The columns `chat_row` and `message_row` read, by position; a row's parent is its second column
# for chats, its first for messages.
CHAT_COLUMNS = (
    chats.c.id,
    chats.c.application_id,
    chats.c.number,
    chats.c.messages_count,
    chats.c.created_at,
)
MESSAGE_COLUMNS = (
    messages.c.chat_id,
    messages.c.number,
    messages.c.body,
    messages.c.created_at,
    messages.c.updated_at,
    messages.c.author,
)


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


def application_row(row: Row[Any]) -> Application:
    return Application(
        id=row.id,
        token=row.token,
        name=row.name,
        chats_count=row.chats_count,
        public_id=row.public_id or "",
        users_manage_chats=bool(row.users_manage_chats),
    )


def utc(value: datetime | str) -> datetime:
    """A time column's value as an aware UTC datetime: as SQLAlchemy gives it, or raw (SQLite's
    ISO text, MySQL's naive datetime). (`replace(tzinfo=)` costs five times the parse.)"""
    if isinstance(value, str):
        return datetime.fromisoformat(value + "+00:00")
    return value if value.tzinfo is UTC else value.replace(tzinfo=UTC)


def chat_row(row: Any) -> Chat:
    """A chat from a row of `CHAT_COLUMNS`."""
    return Chat(
        id=row[0],
        application_id=row[1],
        number=row[2],
        messages_count=row[3],
        created_at=utc(row[4]),
    )


def message_row(row: Any) -> Message:
    """A message from a row of `MESSAGE_COLUMNS` (SQLite's times are text)."""
    created_at, updated_at = row[3], row[4]
    if type(created_at) is not str:  # MySQL's
        created = utc(created_at)
        updated = created if updated_at == created_at else utc(updated_at)
        return Message(row[1], row[2], created, updated, row[5])
    created = _from_iso(created_at + "+00:00")
    if updated_at == created_at:  # never edited: parsed once
        return Message(row[1], row[2], created, created, row[5])
    return Message(row[1], row[2], created, _from_iso(updated_at + "+00:00"), row[5])


_from_iso = datetime.fromisoformat
