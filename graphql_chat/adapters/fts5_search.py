"""The search port on SQLite FTS5 with the trigram tokenizer.

The index `messages_fts` is an external-content FTS5 table kept by triggers on `messages`
(see the Alembic history), so it changes in the same transaction as the rows and `index` has
nothing left to do.

Each search first reads the chat's newest `SCAN_WINDOW` rows and checks them directly: a
small chat is answered from its own rows alone, and a term common enough to fill a page is
found there at once, without the trigram index, whose cost follows the term's postings across
every chat. Only when the window leaves the page short and the chat has older rows does the
index answer for the rest: terms of three characters or more through its trigrams, shorter
ones (which trigrams cannot match) by the `chat_contains` SQL function. Both checks fold case
the same way (Python's `str.lower`, "CAFÉ" finds "café"); quotes and wildcards are literal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, text

from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import Message
from graphql_chat.ports import IndexedMessage

SCAN_WINDOW = 2000  # a chat's newest rows checked directly before the index is asked

_WINDOW = text(
    "SELECT number, body FROM messages WHERE chat_id = :chat AND number < :before "
    "ORDER BY number DESC LIMIT :window"
)


def _phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def _search_chat(
    conn: Connection, chat_id: int, terms: Sequence[str], before: int | None, limit: int
) -> list[Message]:
    """Up to `limit` matches newest first, below `before`: the window, then the index."""
    lowered = [t.lower() for t in terms]
    start = before if before is not None else 2**63 - 1
    window = conn.execute(_WINDOW, {"chat": chat_id, "before": start, "window": SCAN_WINDOW})
    rows = window.all()
    found = [
        Message(number=r.number, body=r.body)
        for r in rows
        if all(term in r.body.lower() for term in lowered)
    ][:limit]
    if len(found) == limit or len(rows) < SCAN_WINDOW:
        return found
    return found + _indexed(conn, chat_id, terms, rows[-1].number, limit - len(found))


def _indexed(
    conn: Connection, chat_id: int, terms: Sequence[str], before: int, limit: int
) -> list[Message]:
    params: dict[str, object] = {"chat": chat_id, "before": before, "limit": limit}
    where = ["m.chat_id = :chat", "m.number < :before"]
    long_terms = [t for t in terms if len(t) >= 3]
    if long_terms:
        where.append("m.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :match)")
        params["match"] = " ".join(_phrase(t) for t in long_terms)
    for i, term in enumerate(t for t in terms if len(t) < 3):
        where.append(f"chat_contains(m.body, :short{i})")
        params[f"short{i}"] = term.lower()
    query = text(
        "SELECT m.number, m.body FROM messages m WHERE "
        + " AND ".join(where)
        + " ORDER BY m.number DESC LIMIT :limit"
    )
    return [Message(number=r.number, body=r.body) for r in conn.execute(query, params)]


class Fts5Search:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def index(self, messages: Sequence[IndexedMessage]) -> None:
        """Nothing to do: the triggers indexed these rows when the store committed them."""

    async def search(
        self, chat_ids: Sequence[int], terms: Sequence[str], before: int | None, limit: int
    ) -> dict[int, list[Message]]:
        def run(conn: Connection) -> dict[int, list[Message]]:
            # One thread hop for every chat.
            return {
                chat_id: _search_chat(conn, chat_id, terms, before, limit)
                for chat_id in dict.fromkeys(chat_ids)
            }

        return await self._store.read(run)

    async def refresh(self) -> None:
        """Nothing to do: FTS5 rows are searchable when their transaction commits."""

    async def rebuild(self, progress: Callable[[int], None]) -> int:
        total = await self._store.count_messages()
        rebuild = text("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
        await self._store.write(lambda conn: conn.execute(rebuild))
        progress(total)
        return total
