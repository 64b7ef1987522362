"""Reads of many at once: pages of messages (through the page reads the service was given:
the store's, or the embedded mode's page cache over them), searches, and the search index
made again from the store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from graphql_chat.config import Settings
from graphql_chat.domain import UNKNOWN_TIME, ChatRef, Message, search_terms
from graphql_chat.paging import MessagePages, Page, PageRequest, make_page, number
from graphql_chat.ports import Search, Store


class Reads:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        search: Search,
        pages: MessagePages,
    ) -> None:
        self._settings = settings
        self._store = store
        self.search_index = search
        self._pages = pages

    async def message_pages(
        self, chats: Sequence[ChatRef], request: PageRequest
    ) -> dict[int, Page[Message]]:
        """The same page in each chat, by chat id."""
        return await self._pages(chats, request)

    def search_terms(self, query: object) -> tuple[str, ...]:
        return tuple(search_terms(query, self._settings.max_body_length))

    async def search(self, chat_id: int, query: object, request: PageRequest) -> Page[Message]:
        pages = await self.search_pages([chat_id], self.search_terms(query), request)
        return pages[chat_id]

    async def search_pages(
        self, chat_ids: Sequence[int], terms: Sequence[str], request: PageRequest
    ) -> dict[int, Page[Message]]:
        """The same search in each chat, one round trip for all (`terms` from `search_terms`)."""
        found = await self.search_index.search(
            chat_ids, terms, request.key, request.size + 1, request.backward
        )
        unknown = [
            (chat_id, m.number)
            for chat_id, rows in found.items()
            for m in rows
            if m.created_at is UNKNOWN_TIME or m.updated_at is UNKNOWN_TIME
        ]
        if unknown:  # indexed under mapping 2, without times: the store has them
            stored = await self._store.messages_by_number(unknown)
            found = {
                chat_id: [
                    replace(
                        m,
                        created_at=s.created_at,
                        updated_at=s.updated_at,
                    )
                    if (s := stored.get((chat_id, m.number))) is not None
                    else m
                    for m in rows
                ]
                for chat_id, rows in found.items()
            }
        return {
            chat_id: make_page("search", rows, request, number) for chat_id, rows in found.items()
        }

    async def reindex(self, progress: Callable[[int], None]) -> int:
        """Make the search index again from the store, while writes and searches go on;
        `progress` hears each number of messages done. Returns how many there are."""
        return await self.search_index.rebuild(self._store, progress)
