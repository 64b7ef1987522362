"""The search port on SQLite FTS5: n-gram tokens, each chat's postings side by side.

The index `message_grams` is a contentless FTS5 table kept by triggers on `messages` (see the
Alembic history), so it changes in the same transaction as the rows and `index` has nothing
left to do. Its documents are the n-gram tokens of `sqlite_functions.document`: a term of
three characters or more is a phrase of its trigrams, a shorter one a bigram or unigram token.

A document's rowid is its chat's id in the high 32 bits and the message number in the low ones:
a chat's documents are one contiguous rowid range. A search asks FTS5 for the last `limit`
matching rowids in the chat's range, so it reads the chat's stretch of each token's postings
(seeking past other chats') and stops when the page is full: a common term costs a page, a
rare one its postings in this chat, and no chat pays for another's size. (Rowids rise with the
numbers because FTS5 writes a segment whenever a transaction's rowids go down; the store
inserts each batch's messages in chat and number order.) Bodies come from `messages`, checked
once more against the terms (with `str.lower`, as the tokens were made).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from sqlalchemy import Connection, Integer, Text, bindparam, text

from graphql_chat.adapters import sqlite_functions
from graphql_chat.domain import Message
from graphql_chat.errors import ConfigurationError
from graphql_chat.ports import Catalogue
from graphql_chat.tables import Timestamp

R = TypeVar("R")

_SPAN = 2**32  # rowids per chat; message numbers are below 2**31 (GraphQL Int)

_MATCHING = text(
    "SELECT rowid FROM message_grams WHERE message_grams MATCH :match "
    "AND rowid BETWEEN :low AND :high ORDER BY rowid DESC LIMIT :limit"
)
_MATCHING_UP = text(
    "SELECT rowid FROM message_grams WHERE message_grams MATCH :match "
    "AND rowid BETWEEN :low AND :high ORDER BY rowid ASC LIMIT :limit"
)
_BODIES = (
    text(
        "SELECT number, body, created_at, updated_at, author FROM messages "
        "WHERE chat_id = :chat AND number IN :numbers"
    )
    .bindparams(bindparam("numbers", expanding=True))
    .columns(
        number=Integer(),
        body=Text(),
        created_at=Timestamp(),
        updated_at=Timestamp(),
        author=Text(),
    )
)
_VERSION = text("SELECT grams, unicode FROM message_grams_version")
_EMPTY = text("INSERT INTO message_grams(message_grams) VALUES ('delete-all')")
_REFILL = text(
    "INSERT INTO message_grams(rowid, grams) "
    f"SELECT chat_id * {_SPAN} + number, chat_grams(body) FROM messages"
)
_FORGET_VERSION = text("DELETE FROM message_grams_version")
_RECORD_VERSION = text(
    "INSERT INTO message_grams_version(grams, unicode) VALUES (:grams, :unicode)"
)


def _search_chat(
    conn: Connection,
    chat_id: int,
    query: str,
    lowered: list[str],
    before: int | None,
    limit: int,
    backward: bool = False,
) -> list[Message]:
    """Up to `limit` matches newest first, numbered below `before` (`backward`: oldest
    first, numbered above it)."""
    base = chat_id * _SPAN
    if backward:
        above = before or 0
        if above >= _SPAN - 1:
            return []
        bounds = {"low": base + above + 1, "high": base + _SPAN - 1}
    else:
        if before is not None and before <= 1:
            return []
        below = min(before, _SPAN) if before is not None else _SPAN
        bounds = {"low": base + 1, "high": base + below - 1}
    rowids = conn.execute(
        _MATCHING_UP if backward else _MATCHING, {"match": query, "limit": limit, **bounds}
    ).scalars()
    numbers = [rowid - base for rowid in rowids]
    if not numbers:
        return []
    rows = conn.execute(_BODIES, {"chat": chat_id, "numbers": numbers})
    found = {r.number: r for r in rows}
    return [
        Message(
            number=n,
            body=r.body,
            created_at=r.created_at,
            updated_at=r.updated_at,
            author=r.author,
        )
        for n in numbers
        if (r := found.get(n)) is not None and all(term in r.body.lower() for term in lowered)
    ]


class Database(Protocol):
    """The SQLite database the index lives in (the store's): functions run on a connection."""

    async def read(self, operation: Callable[[Connection], R]) -> R: ...
    async def write(self, operation: Callable[[Connection], R]) -> R: ...


class Fts5Search:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def start(self) -> None:
        """Refuses an index whose tokens were made by another encoding or Unicode version."""
        rows = await self._database.read(lambda conn: conn.execute(_VERSION).all())
        built = [tuple(row) for row in rows]
        wanted = (sqlite_functions.GRAMS_VERSION, sqlite_functions.UNICODE_VERSION)
        if built != [wanted]:
            raise ConfigurationError(
                f"the SQLite search index holds n-grams of {built or 'no known version'}, this "
                f"code makes {wanted} (encoding, Unicode); run `graphql-chat reindex` to rebuild it"
            )

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        """The index lives in the store's database: the store's check covers it."""

    async def search(
        self,
        chat_ids: Sequence[int],
        terms: Sequence[str],
        before: int | None,
        limit: int,
        backward: bool = False,
    ) -> dict[int, list[Message]]:
        query = sqlite_functions.match(terms)
        lowered = [t.lower() for t in terms]

        def run(conn: Connection) -> dict[int, list[Message]]:
            # One thread hop for every chat.
            return {
                chat_id: _search_chat(conn, chat_id, query, lowered, before, limit, backward)
                for chat_id in dict.fromkeys(chat_ids)
            }

        return await self._database.read(run)

    async def refresh(self) -> None:
        """Nothing to do: FTS5 rows are searchable when their transaction commits."""

    async def rebuild(self, source: Catalogue, progress: Callable[[int], None]) -> int:
        """Every body's tokens made again from the rows beside the index (the database the
        store keeps), in one transaction: searches read the old index until it commits."""
        versions = {
            "grams": sqlite_functions.GRAMS_VERSION,
            "unicode": sqlite_functions.UNICODE_VERSION,
        }

        def refill(conn: Connection) -> int:
            conn.execute(_EMPTY)
            count = conn.execute(_REFILL).rowcount
            conn.execute(_FORGET_VERSION)
            conn.execute(_RECORD_VERSION, versions)
            return count

        total = await self._database.write(refill)
        progress(total)
        return total
