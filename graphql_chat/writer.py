"""Applies a batch of accepted events to the store, then to search. Both pipelines run this."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from graphql_chat.domain import Event
from graphql_chat.ports import Search, Store

log = logging.getLogger(__name__)


class Writer:
    def __init__(self, store: Store, search: Search) -> None:
        self.store = store
        self.search = search

    async def apply(self, events: Sequence[Event]) -> list[tuple[Event, str]]:
        """Idempotent: applying the same events again, in any order, changes nothing more.

        Returns the events the store set aside, each with the reason.
        """
        applied = await self.store.apply(events)
        if applied.indexed:
            await self.search.index(applied.indexed)
        for event, reason in applied.set_aside:
            log.error("set aside %r: %s", event, reason)
        return applied.set_aside
