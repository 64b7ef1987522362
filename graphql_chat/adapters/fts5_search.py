"""The search port on SQLite FTS5 with the trigram tokenizer.

The index `messages_fts` is an external-content FTS5 table kept by triggers on `messages`
(see the Alembic history), so it changes in the same transaction as the rows and `index` has
nothing left to do. Terms of three characters or more go through the trigram index; shorter
terms, which trigrams cannot match, are checked by the `chat_contains` SQL function.
Both fold case over Unicode ("CAFÉ" finds "café"); quotes and wildcards are literal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import Connection, text

from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import Message
from graphql_chat.ports import IndexedMessage


def _phrase(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


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
        params: dict[str, object] = {"limit": limit}
        where = ["m.chat_id = :chat"]
        if before is not None:
            where.append("m.number < :before")
            params["before"] = before
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

        def run(conn: Connection) -> dict[int, list[Message]]:
            # One thread hop for every chat; each query is the index lookup for one chat.
            return {
                chat_id: [
                    Message(number=r.number, body=r.body)
                    for r in conn.execute(query, {**params, "chat": chat_id})
                ]
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
