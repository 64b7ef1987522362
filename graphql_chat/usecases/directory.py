"""Names to things: a token to its application, an application's chat number to the chat.
Tokens and chat ids never change, so each process remembers them (bounded) and asks the
store only for what it has not seen; the numbers port shares tokens across processes, so
writes go on while the store is down."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from graphql_chat.domain import Application, Chat, ChatRef, clean_token, parse_number
from graphql_chat.errors import NotFound, Unavailable
from graphql_chat.ports import Numbers, Store
from graphql_chat.usecases.caches import BoundedCache

_CACHE_SIZE = 100_000  # tokens, and chat ids, remembered per process


class Directory:
    def __init__(self, store: Store, numbers: Numbers) -> None:
        self._store = store
        self._numbers = numbers
        self._tokens: BoundedCache[str, int] = BoundedCache(_CACHE_SIZE)
        self._chat_ids: BoundedCache[tuple[int, int], int] = BoundedCache(_CACHE_SIZE)

    # -- applications --------------------------------------------------------------------------

    async def application(self, token: str) -> Application | None:
        if clean_token(token) is None:
            return None
        found = (await self._store.applications_by_token([token])).get(token)
        if found is not None:
            self.remember(found)
        return found

    async def applications(self, tokens: Sequence[str]) -> dict[str, Application]:
        return await self._store.applications_by_token(tokens)

    async def require_application(self, token: str) -> Application:
        application = await self.application(token)
        if application is None:
            raise NotFound("application not found")
        return application

    async def application_id(self, token: str) -> int:
        """The application's id, without the store when this process or the numbers port
        has seen the token."""
        app_id = self._tokens.get(token)
        if app_id is None:
            if clean_token(token) is None:
                raise NotFound("application not found")
            with suppress(Unavailable):  # then the store answers alone
                app_id = await self._numbers.application_id(token)
            if app_id is None:
                app_id = (await self.require_application(token)).id
                with suppress(Unavailable):
                    await self._numbers.remember_token(token, app_id)
            self._tokens.put(token, app_id)
        return app_id

    def remember(self, application: Application) -> None:
        self._tokens.put(application.token, application.id)

    # -- chats ---------------------------------------------------------------------------------

    async def chats(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Chat]:
        return await self._store.chats_by_number(keys)

    async def require_chat(self, token: str, number: object) -> Chat:
        chat_number = parse_number(number, "chat number")
        key = (await self.application_id(token), chat_number)
        chat = (await self._store.chats_by_number([key])).get(key)
        if chat is None:
            raise NotFound(f"chat {chat_number} not found")
        self._chat_ids.put(key, chat.id)
        return chat

    async def chat_id(self, token: str, number: object) -> int:
        """A chat's id, without the store when this process has seen the chat (search goes
        on while it is down)."""
        return (await self.chat_ref(token, number)).id

    async def chat_ref(self, token: str, number: object) -> ChatRef:
        """A chat's id and key, without the store when this process has seen the chat."""
        chat_number = parse_number(number, "chat number")
        key = (await self.application_id(token), chat_number)
        found = self._chat_ids.get(key)
        if found is None:
            found = (await self.require_chat(token, chat_number)).id
        return ChatRef(found, *key)
