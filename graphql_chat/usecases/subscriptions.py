"""Subscriptions: a chat's messages and an application's chats as they are stored."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from graphql_chat.domain import Chat
from graphql_chat.errors import InvalidInput
from graphql_chat.live import Hub, LiveEvent
from graphql_chat.ports import IndexedMessage, StoredChat
from graphql_chat.usecases.acceptance import Acceptance
from graphql_chat.usecases.directory import Directory


class Subscriptions:
    def __init__(self, hub: Hub, directory: Directory, acceptance: Acceptance) -> None:
        self.hub = hub
        self._directory = directory
        self._acceptance = acceptance

    async def message_events(
        self, token: str, chat_number: object, after: object, overflow: Callable[[], None]
    ) -> AsyncGenerator[LiveEvent[IndexedMessage], None]:
        """A chat's messages as they are stored; with `after`, first the stored ones above it.
        Raises `NotFound` at once for an unknown application or chat (a chat just created
        is waited for a little: see `Acceptance.stored`)."""
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= 2**53
        ):
            raise InvalidInput("afterNumber must be a number of 0 or more", "afterNumber")

        async def read() -> Chat:
            return await self._directory.require_chat(token, chat_number)

        chat = await self._acceptance.stored(read)
        return self.hub.message_events(chat, after, overflow)

    async def chat_events(
        self, token: str, overflow: Callable[[], None]
    ) -> AsyncGenerator[LiveEvent[StoredChat], None]:
        """An application's chats as they are stored. Raises `NotFound` for an unknown token."""
        return self.hub.chat_events(await self._directory.application_id(token), overflow)
