"""The viewer (the person a user token names), their chats by latest activity, and read
markers: the GraphQL side of `usecases/reading.py`."""

from __future__ import annotations

from enum import Enum

import strawberry

from graphql_chat import domain
from graphql_chat.graphql.connections import PAGING, Connection, connection
from graphql_chat.graphql.context import Info
from graphql_chat.graphql.types import Chat
from graphql_chat.web.paging import page_request


@strawberry.enum(description="The order of a person's chats.")
class ChatOrder(Enum):
    LATEST_ACTIVITY = strawberry.enum_value(
        "LATEST_ACTIVITY",
        description="Newest activity first: the newest stored message's time, or when the "
        "person joined if later. A chat that moves up while pages are read goes above the "
        "cursor: it is not shown twice, and reading the first page again shows it.",
    )
    JOINED = strawberry.enum_value("JOINED", description="In the order the person joined them.")


@strawberry.type(description="The person the request's user token names, and what they may reach.")
class Viewer:
    user: strawberry.Private[domain.User]
    totals: strawberry.Private[tuple[int, int] | None] = None

    @strawberry.field(description="The application's id for the person.")
    def id(self) -> str:
        return self.user.id

    @strawberry.field(
        description="The chats the person is a member of (their inbox): `first` after "
        "`after`, or the `last` before `before`, in `orderBy`'s order."
    )
    async def chats(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        order_by: ChatOrder = ChatOrder.LATEST_ACTIVITY,
    ) -> Connection[Chat]:
        service, token = info.context.service, self.user.token
        if order_by is ChatOrder.JOINED:
            request = page_request(service.settings, "member", PAGING, first, after, last, before)
            joined = await service.members.chats(self.user, request)
            return connection(joined, lambda chat: Chat.of(chat, token, scoped=True))
        request = page_request(service.settings, "inbox", PAGING, first, after, last, before)
        page = await service.reading.inbox(self.user, request)
        return connection(page, lambda item: Chat.listed(*item, self.user))

    @strawberry.field(
        description="The chat with this number, or null (also for a chat the "
        "person is not a member of)."
    )
    async def chat(self, info: Info, number: int) -> Chat | None:
        if not await info.context.service.members.is_member(self.user, number):
            return None
        found = await info.context.chats.load((self.user.application_id, number))
        return Chat.of(found, self.user.token, scoped=True) if found else None

    async def _totals(self, info: Info) -> tuple[int, int]:
        if self.totals is None:
            self.totals = await info.context.service.reading.totals(self.user)
        return self.totals

    @strawberry.field(description="How many of the person's chats hold unread messages.")
    async def unread_chats_count(self, info: Info) -> int:
        return (await self._totals(info))[0]

    @strawberry.field(
        description="How many unread messages the person's chats hold in all, counted up to "
        "999 (each chat's `unreadCount` is exact)."
    )
    async def unread_count(self, info: Info) -> int:
        return (await self._totals(info))[1]


@strawberry.input
class MarkReadInput:
    chat_number: int
    number: int = strawberry.field(description="A message's number.")


@strawberry.type
class MarkReadPayload:
    chat_number: int
    last_read_number: int = strawberry.field(
        description="The marker asked for; stored with the next batch of writes (a lower one "
        "than stored changes nothing)."
    )


@strawberry.type
class ReadingMutations:
    @strawberry.mutation(
        description="Read up to message `number` in a chat (a user token's member): the "
        "marker moves forward only, never past the newest stored message."
    )
    async def mark_read(self, info: Info, input: MarkReadInput) -> MarkReadPayload:
        return await _mark(info, input, back=False)

    @strawberry.mutation(
        description="Make message `number` and those after it unread again (a user token's "
        "member): moves the marker back, to `number - 1`."
    )
    async def mark_unread(self, info: Info, input: MarkReadInput) -> MarkReadPayload:
        return await _mark(info, input, back=True)


async def _mark(info: Info, input: MarkReadInput, back: bool) -> MarkReadPayload:
    _, user = await info.context.caller(None)  # a user, or Unauthenticated
    assert user is not None
    marker = await info.context.service.reading.mark(user, input.chat_number, input.number, back)
    return MarkReadPayload(chat_number=input.chat_number, last_read_number=marker)
