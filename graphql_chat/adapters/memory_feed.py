"""The feed port in process: the embedded mode's one process commits and serves subscribers."""

from __future__ import annotations

from graphql_chat.ports import Changes, Listener


class MemoryFeed:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._listeners.clear()

    async def ping(self) -> None:
        pass

    async def publish(self, changes: Changes) -> None:
        if changes:
            for listener in self._listeners:
                listener.changes(changes)

    async def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)
