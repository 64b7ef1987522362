"""Per-request context: the service and DataLoaders that batch nested lists into few statements."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from functools import cached_property
from typing import Any, TypeVar

from starlette.websockets import WebSocket, WebSocketState
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from graphql_chat.domain import Application, Chat, ChatRef, Message, User
from graphql_chat.errors import RateLimited, Unauthenticated
from graphql_chat.paging import Page, PageRequest
from graphql_chat.ports import Membership
from graphql_chat.usecases import ChatService

K = TypeVar("K")
_closing: set[asyncio.Task[None]] = set()
V = TypeVar("V")

# (parent id, page size, key past which the page starts, whether it goes backward)
PageKey = tuple[int, int, int | None, bool]
MessagePageKey = tuple[ChatRef, int, int | None, bool]  # the parent is a chat's id and key
# (chat id, search terms, page size, key past which the page starts, whether it goes backward)
SearchKey = tuple[int, tuple[str, ...], int, int | None, bool]


def _pages_loader(
    fetch: Callable[[Sequence[int], PageRequest], Awaitable[dict[int, Page[V]]]],
) -> DataLoader[PageKey, Page[V]]:
    """One statement per distinct page request among the parents asked for, not per parent."""

    async def grouped(parents: Sequence[int], rest: tuple[Any, ...]) -> dict[int, Page[V]]:
        size, key, backward = rest
        return await fetch(parents, PageRequest(size, key, backward))

    return _grouped_loader(grouped)


def _search_loader(
    fetch: Callable[[Sequence[int], Sequence[str], PageRequest], Awaitable[dict[int, Page[V]]]],
) -> DataLoader[SearchKey, Page[V]]:
    """One search request per distinct (terms, first, after) among the chats asked for."""

    async def grouped(chat_ids: Sequence[int], rest: tuple[Any, ...]) -> dict[int, Page[V]]:
        terms, size, after, backward = rest
        return await fetch(chat_ids, terms, PageRequest(size, after, backward))

    return _grouped_loader(grouped)


def _grouped_loader(
    fetch: Callable[[Sequence[Any], tuple[Any, ...]], Awaitable[dict[Any, Page[V]]]],
) -> DataLoader[Any, Page[V]]:
    """Keys are (parent, *rest): one fetch per distinct rest, for all its parents at once."""

    async def load(keys: list[tuple[Any, ...]]) -> list[Page[V]]:
        groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
        for key in keys:
            groups[key[1:]].append(key[0])
        found: dict[tuple[Any, ...], Page[V]] = {}
        for rest, parents in groups.items():
            pages = await fetch(parents, rest)
            for parent in parents:
                found[(parent, *rest)] = pages[parent]
        return [found[key] for key in keys]

    return DataLoader(load_fn=load)


def _lookup_loader(
    fetch: Callable[[Sequence[tuple[int, int]]], Awaitable[dict[tuple[int, int], V]]],
) -> DataLoader[tuple[int, int], V | None]:
    async def load(keys: list[tuple[int, int]]) -> list[V | None]:
        found = await fetch(list(dict.fromkeys(keys)))
        return [found.get(key) for key in keys]

    return DataLoader(load_fn=load)


SLOW_CONSUMER_CLOSE = 4008  # the close code of a WebSocket whose client fell behind


class Context:
    """Loaders are made on first use: a mutation, which uses none, pays for none. Over a
    WebSocket one context serves the connection: each subscription event starts afresh."""

    def __init__(
        self,
        service: ChatService,
        authorization: str | None = None,
        websocket: WebSocket | None = None,
        address: str = "unknown",
    ) -> None:
        self.service = service
        self.authorization = authorization  # the request's Authorization header
        self.websocket = websocket
        self.address = address  # the client's (see TRUSTED_PROXIES)
        self.refused: RateLimited | None = None  # the rate limit a field of the request hit
        self._read_counted = False
        self.connection_params: object = None  # graphql-transport-ws connection_init payload
        self._user: tuple[User | None] | None = None

    async def user(self) -> User | None:
        """The user the request's user token names (over a WebSocket, the `authorization`
        of `connection_init`'s payload), or None without one; `Unauthenticated` when the
        token does not hold. Checked once per request, or per operation over a socket."""
        if self._user is None or self.websocket is not None:
            self._user = (await self.service.users.authenticate(self._authorization()),)
        return self._user[0]

    def _authorization(self) -> str | None:
        if self.websocket is None:
            return self.authorization
        params = self.connection_params
        if isinstance(params, dict):
            for name in ("authorization", "Authorization"):
                value = params.get(name)
                if isinstance(value, str):
                    return value
        return self.authorization

    async def caller(
        self, application_token: str | None, writes: bool = True
    ) -> tuple[str, User | None]:
        """Who a write or a subscription is for: the application's backend (its token
        given), or the user of the request's user token; counted against their rate limit."""
        if application_token is not None:
            return await self.backend(application_token), None
        user = await self.user()
        if user is None:
            raise Unauthenticated(
                "give applicationToken (the application's backend) or send a user token "
                "(Authorization: Bearer <token>)"
            )
        if writes:
            await self.limited(self.service.throttle.user(user, writes=True))
        else:
            await self.reading(user)
        return user.token, user

    async def backend(self, application_token: str) -> str:
        """A call with an application's token, counted against its rate limit."""
        app_id = await self.service.directory.application_id(application_token)
        await self.limited(self.service.throttle.application(app_id))
        return application_token

    async def reading(self, user: User) -> None:
        """A user's read, counted once per request (per operation over a WebSocket)."""
        if self._read_counted and self.websocket is None:
            return
        self._read_counted = True
        await self.limited(self.service.throttle.user(user, writes=False))

    async def anonymous(self) -> None:
        """A call with no credential, counted against its address's rate limit."""
        await self.limited(self.service.throttle.anonymous(self.address))

    async def limited(self, hit: Awaitable[None]) -> None:
        """Count a hit; a refusal is also kept for the HTTP answer's status and headers."""
        try:
            await hit
        except RateLimited as refused:
            self.refused = refused
            raise

    def fresh(self) -> None:
        """Forget what the loaders hold: the next event reads the store as it is now."""
        for name in (
            "applications",
            "chat_pages",
            "message_pages",
            "search_pages",
            "chats",
            "messages",
            "memberships",
            "unread",
        ):
            self.__dict__.pop(name, None)

    def slow(self) -> None:
        """A subscription's queue overflowed: close the connection with a code that says so
        (a graphql-ws client reconnects; resubscribing with afterNumber loses nothing)."""
        websocket = self.websocket
        if websocket is not None and websocket.client_state == WebSocketState.CONNECTED:
            task = asyncio.ensure_future(
                websocket.close(SLOW_CONSUMER_CLOSE, "slow consumer: resubscribe with afterNumber")
            )
            _closing.add(task)
            task.add_done_callback(_closing.discard)

    @cached_property
    def chat_pages(self) -> DataLoader[PageKey, Page[Chat]]:
        return _pages_loader(self.service.chats.pages)

    @cached_property
    def message_pages(self) -> DataLoader[MessagePageKey, Page[Message]]:
        reads = self.service.reads

        async def grouped(
            chats: Sequence[ChatRef], rest: tuple[Any, ...]
        ) -> dict[ChatRef, Page[Message]]:
            pages = await reads.message_pages(chats, PageRequest(*rest))
            return {chat: pages[chat.id] for chat in chats}

        return _grouped_loader(grouped)

    @cached_property
    def search_pages(self) -> DataLoader[SearchKey, Page[Message]]:
        return _search_loader(self.service.reads.search_pages)

    @cached_property
    def applications(self) -> DataLoader[str, Application | None]:
        async def load(tokens: list[str]) -> list[Application | None]:
            found = await self.service.directory.applications(list(dict.fromkeys(tokens)))
            return [found.get(token) for token in tokens]

        return DataLoader(load_fn=load)

    @cached_property
    def chats(self) -> DataLoader[tuple[int, int], Chat | None]:
        return _lookup_loader(self.service.directory.chats)

    @cached_property
    def messages(self) -> DataLoader[tuple[int, int], Message | None]:
        return _lookup_loader(self.service.messages.by_keys)

    @cached_property
    def memberships(self) -> DataLoader[tuple[User, int], Membership | None]:
        """A user's membership of a chat (by number), with their reading state."""
        reading = self.service.reading

        async def load(keys: list[tuple[User, int]]) -> list[Membership | None]:
            found: dict[User, dict[int, Membership]] = {}
            for user, numbers in _by_user(keys).items():
                found[user] = await reading.memberships(user, numbers)
            return [found[user].get(number) for user, number in keys]

        return DataLoader(load_fn=load)

    @cached_property
    def unread(self) -> DataLoader[tuple[User, int, int], int]:
        """The messages others wrote in a chat above a user's marker: (user, chat id, marker)."""
        reading = self.service.reading

        async def load(keys: list[tuple[User, int, int]]) -> list[int]:
            found: dict[User, dict[int, int]] = {}
            markers: dict[User, dict[int, int]] = defaultdict(dict)
            for user, chat_id, marker in keys:
                markers[user][chat_id] = marker
            for user, wanted in markers.items():
                found[user] = await reading.unread(user, wanted)
            return [found[user][chat_id] for user, chat_id, _ in keys]

        return DataLoader(load_fn=load)


def _by_user(keys: Sequence[tuple[User, int]]) -> dict[User, list[int]]:
    grouped: dict[User, list[int]] = defaultdict(list)
    for user, number in keys:
        grouped[user].append(number)
    return grouped


Info = StrawberryInfo[Context, Any]
