"""The statements a page of chats or of messages is read with: one index range scan per
parent, stopped at the page's size, made once for each shape and compiled once
(`sql_database.Compiled`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, literal_column, select, union_all

from graphql_chat.adapters.sql_rows import CHAT_COLUMNS, MESSAGE_COLUMNS
from graphql_chat.tables import chats, messages

_COLUMNS = {"chats": CHAT_COLUMNS, "messages": MESSAGE_COLUMNS}
_PARENT = {"chats": chats.c.application_id, "messages": messages.c.chat_id}

# Statements made once: pages by (table, parents, past a cursor, backward); a chat by number.
_PAGES: dict[tuple[str, int, bool, bool], Any] = {}
ONE_CHAT = select(*CHAT_COLUMNS).where(
    chats.c.application_id == bindparam("app"), chats.c.number == bindparam("number")
)


def pages_query(
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
