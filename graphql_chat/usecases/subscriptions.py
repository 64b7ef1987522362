"""Subscriptions: a chat's messages and an application's chats as they are stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from graphql_chat.domain import Chat, User
from graphql_chat.errors import Forbidden, InvalidInput, Unauthenticated
from graphql_chat.live import Hub, LiveEvent
from graphql_chat.ports import IndexedMessage, StoredChat
from graphql_chat.usecases.acceptance import Acceptance
from graphql_chat.usecases.directory import Directory
from graphql_chat.usecases.members import Members


class Subscriptions:
    def __init__(
        self, hub: Hub, directory: Directory, acceptance: Acceptance, members: Members
    ) -> None:
        self.hub = hub
        self._directory = directory
        self._acceptance = acceptance
        self._members = members

    async def message_events(
        self,
        token: str,
        chat_number: object,
        after: object,
        overflow: Callable[[], None],
        user: User | None = None,
        recheck: float = 0.5,
    ) -> AsyncGenerator[LiveEvent[IndexedMessage], None]:
        """A chat's messages as they are stored; with `after`, first the stored ones above it.
        Raises `NotFound` at once for an unknown application or chat (a chat just created
        is waited for a little: see `Acceptance.stored`), or one the user is not a member
        of. A user's stream ends with `Forbidden` within `recheck` seconds of their removal
        from the chat, and with `Unauthenticated` when their token expires."""
        if user is not None:
            await self._members.require(user, chat_number)
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= 2**53
        ):
            raise InvalidInput("afterNumber must be a number of 0 or more", "afterNumber")

        async def read() -> Chat:
            return await self._directory.require_chat(token, chat_number)

        chat = await self._acceptance.stored(read)
        events = self.hub.message_events(chat, after, overflow)
        if user is None:
            return events
        return self._while_member(events, user, chat.number, recheck)

    async def _while_member(
        self,
        events: AsyncGenerator[LiveEvent[IndexedMessage], None],
        user: User,
        number: int,
        recheck: float,
    ) -> AsyncGenerator[LiveEvent[IndexedMessage], None]:
        """`events` while the user stays a member, checked at least every `recheck` seconds,
        idle or not."""
        source: AsyncIterator[LiveEvent[IndexedMessage]] = aiter(events)
        pending: asyncio.Future[LiveEvent[IndexedMessage]] | None = None
        checked = time.monotonic()
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(anext(source))
                done, _ = await asyncio.wait({pending}, timeout=recheck)
                if time.monotonic() - checked >= recheck or not done:
                    if user.expires and time.time() > user.expires:
                        raise Unauthenticated("the user token has expired: connect with a new one")
                    if not await self._members.is_member(user, number):
                        raise Forbidden(f"you are no longer a member of chat {number}")
                    checked = time.monotonic()
                if done:
                    event, pending = pending.result(), None
                    yield event
        except StopAsyncIteration:
            return
        finally:
            if pending is not None:  # the source must stop before it can be closed
                pending.cancel()
                await asyncio.wait({pending})
            await events.aclose()

    async def chat_events(
        self, token: str, overflow: Callable[[], None]
    ) -> AsyncGenerator[LiveEvent[StoredChat], None]:
        """An application's chats as they are stored. Raises `NotFound` for an unknown token."""
        return self.hub.chat_events(await self._directory.application_id(token), overflow)
