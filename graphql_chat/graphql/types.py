"""GraphQL object types and their nested fields. Resolvers parse, call the service, shape."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Protocol

import strawberry

from graphql_chat import domain
from graphql_chat.errors import NotFound
from graphql_chat.graphql.connections import PAGING, Connection, connection
from graphql_chat.graphql.context import Info
from graphql_chat.live import EventKind
from graphql_chat.paging import Page
from graphql_chat.ports import Membership
from graphql_chat.web.paging import page_request


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("a DateTime is a string")
    return domain.parse_iso(value)


DATETIME = strawberry.scalar(
    name="DateTime",
    description="A UTC instant, ISO 8601 (RFC 3339) to the microsecond: "
    "2026-11-30T02:21:11.123456Z.",
    specified_by_url="https://datatracker.ietf.org/doc/html/rfc3339",
    serialize=domain.iso,
    parse_value=_parse_time,
)


@strawberry.interface(
    description="An object with a global id, to refetch with `node(id:)`. An id is signed "
    "with its application's token: it does not reveal the token, and only someone who had "
    "the token can have made it."
)
class Node:
    @strawberry.field(description="The object's global id (opaque).")
    def id(self) -> strawberry.ID:
        raise NotImplementedError


# Where a message or chat belongs: (application id, application token).
Owner = tuple[int, str]


@strawberry.type(
    name="User",
    description="A person using an application, by the application's own id for them.",
)
class UserView:
    id: str = strawberry.field(description="The application's id for the person.")


@strawberry.type(description="How far a member of a chat has read.")
class ReadMarker:
    user: UserView
    last_read_number: int = strawberry.field(
        description="Messages up to this number are read (0: none)."
    )
    read_at: datetime | None = strawberry.field(description="When it last moved (null: never).")

    @classmethod
    def of(cls, member: Membership) -> ReadMarker:
        at = None if member.read_at is None else domain.instant(member.read_at)
        return cls(
            user=UserView(id=member.user_id), last_read_number=member.last_read_number, read_at=at
        )


def _signer(token: str, scoped: bool) -> str:
    return domain.user_scope(token) if scoped else token


class Shown(Protocol):
    """What a message is shown from: a stored message, or one a subscription is told of."""

    @property
    def number(self) -> int: ...
    @property
    def body(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def author(self) -> str | None: ...


@strawberry.type(description="A message of a chat; numbers start at 1 in each chat.")
class Message(Node):
    number: int
    body: str
    owner: strawberry.Private[Owner]
    chat_number: strawberry.Private[int]
    created: strawberry.Private[datetime]
    updated: strawberry.Private[datetime]
    author_id: strawberry.Private[str | None] = None
    scoped: strawberry.Private[bool] = False  # shown to a user: its id is a user-scope one

    @classmethod
    def of(cls, message: Shown, owner: Owner, chat_number: int, scoped: bool = False) -> Message:
        return cls(
            number=message.number,
            body=message.body,
            owner=owner,
            chat_number=chat_number,
            created=message.created_at,
            updated=message.updated_at,
            author_id=message.author,
            scoped=scoped,
        )

    @strawberry.field(
        description="Who wrote it; null for a message the application's backend sent with "
        "its token."
    )
    def author(self) -> UserView | None:
        return None if self.author_id is None else UserView(id=self.author_id)

    @strawberry.field(
        description="When its create was accepted: times and numbers agree within a chat."
    )
    async def created_at(self, info: Info) -> datetime:
        if self.created is not domain.UNKNOWN_TIME:
            return self.created
        # An update's answer: the store knows (waited for a little if the create is queued).
        self.created = await info.context.service.messages.created_at(
            self.owner[1], self.chat_number, self.number
        )
        return self.created

    @strawberry.field(
        description="When the write whose body it holds was accepted (its create's time "
        "until it is updated)."
    )
    def updated_at(self) -> datetime:
        return self.updated

    @strawberry.field(description="The message's global id (opaque).")
    def id(self) -> strawberry.ID:
        app_id, token = self.owner
        return strawberry.ID(
            domain.global_id(
                "Message", app_id, _signer(token, self.scoped), self.chat_number, self.number
            )
        )


@strawberry.type(description="A chat of an application; numbers start at 1 in each application.")
class Chat(Node):
    number: int
    messages_count: int
    created_at: datetime = strawberry.field(description="When its create was accepted.")
    application_id: strawberry.Private[int]
    db_id: strawberry.Private[int | None]
    token: strawberry.Private[str]
    scoped: strawberry.Private[bool] = False  # shown to a user: ids are user-scope ones
    # The viewer's membership, when known already (their inbox lists it with the chat).
    membership: strawberry.Private[Membership | None] = None

    @classmethod
    def of(
        cls,
        chat: domain.Chat,
        token: str,
        scoped: bool = False,
        membership: Membership | None = None,
    ) -> Chat:
        return cls(
            number=chat.number,
            messages_count=chat.messages_count,
            created_at=chat.created_at,
            application_id=chat.application_id,
            db_id=chat.id,
            token=token,
            scoped=scoped,
            membership=membership,
        )

    @classmethod
    def listed(cls, chat: domain.Chat | None, membership: Membership, user: domain.User) -> Chat:
        """A chat of a user's inbox; one whose create is still on its way to the store has
        no messages yet, and was created when its first member joined."""
        if chat is not None:
            return cls.of(chat, user.token, True, membership)
        return cls(
            number=membership.chat_number,
            messages_count=0,
            created_at=domain.instant(membership.joined_at),
            application_id=user.application_id,
            db_id=None,
            token=user.token,
            scoped=True,
            membership=membership,
        )

    @strawberry.field(description="The chat's global id (opaque).")
    def id(self) -> strawberry.ID:
        signer = _signer(self.token, self.scoped)
        return strawberry.ID(domain.global_id("Chat", self.application_id, signer, self.number))

    def _message(self, message: domain.Message) -> Message:
        return Message.of(message, (self.application_id, self.token), self.number, self.scoped)

    @strawberry.field(
        description="The chat's members, in the order they joined: `first` after `after`, "
        "or the `last` before `before`."
    )
    async def members(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[UserView]:
        service = info.context.service
        request = page_request(service.settings, "member", PAGING, first, after, last, before)
        page = await service.members.page(self.application_id, self.number, request)
        return connection(page, lambda member: UserView(id=member.user_id))

    @strawberry.field(
        description='Each member\'s read marker, in the order they joined (draw "seen by" '
        "under a message from it): `first` after `after`, or the `last` before `before`."
    )
    async def read_markers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[ReadMarker]:
        service = info.context.service
        request = page_request(service.settings, "member", PAGING, first, after, last, before)
        page = await service.members.page(self.application_id, self.number, request)
        return connection(page, ReadMarker.of)

    async def _viewers(self, info: Info) -> tuple[domain.User, Membership] | None:
        """The user the chat is shown to, and their membership (None for the backend)."""
        if not self.scoped:
            return None
        user = await info.context.user()
        if user is None:
            return None
        if self.membership is None:
            self.membership = await info.context.memberships.load((user, self.number))
        return None if self.membership is None else (user, self.membership)

    @strawberry.field(
        description="The viewer's read marker: messages up to this number are read (null "
        "for the application's backend)."
    )
    async def last_read_number(self, info: Info) -> int | None:
        viewer = await self._viewers(info)
        return None if viewer is None else viewer[1].last_read_number

    @strawberry.field(
        description="How many messages others wrote above the viewer's read marker, counted "
        "from the stored messages (null for the application's backend)."
    )
    async def unread_count(self, info: Info) -> int | None:
        viewer = await self._viewers(info)
        if viewer is None:
            return None
        user, membership = viewer
        chat_id = await self._chat_id(info)
        if chat_id is None:  # not stored yet: nothing in it
            return 0
        return await info.context.unread.load((user, chat_id, membership.last_read_number))

    @strawberry.field(
        description="The chat's latest activity as the viewer's inbox orders it: its newest "
        "stored message's time, or when the viewer joined if later (null for the backend)."
    )
    async def last_activity_at(self, info: Info) -> datetime | None:
        viewer = await self._viewers(info)
        return None if viewer is None else domain.instant(viewer[1].active_at)

    @strawberry.field(description="The newest stored message, or null.")
    async def last_message(self, info: Info) -> Message | None:
        chat_id = await self._chat_id(info)
        if chat_id is None:
            return None
        viewer = await self._viewers(info)
        if viewer is not None:  # the member's row knows the newest number: one lookup
            top = viewer[1].top_number
            found = await info.context.messages.load((chat_id, top)) if top else None
            return self._message(found) if found else None
        chat = domain.ChatRef(chat_id, self.application_id, self.number)
        page = await info.context.message_pages.load((chat, 1, None, True))
        return self._message(page.items[-1]) if page.items else None

    async def _chat_id(self, info: Info) -> int | None:
        if self.db_id is None:
            stored = await info.context.chats.load((self.application_id, self.number))
            self.db_id = stored.id if stored else None
        return self.db_id

    @strawberry.field(
        description="Messages in ascending number order: `first` after `after`, or the "
        "`last` before `before` (the newest without it), each page still ascending."
    )
    async def messages(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Message]:
        request = page_request(
            info.context.service.settings, "message", PAGING, first, after, last, before
        )
        chat_id = await self._chat_id(info)
        if chat_id is None:
            return connection(Page[domain.Message]([], [], False), self._message, 0)
        chat = domain.ChatRef(chat_id, self.application_id, self.number)
        page = await info.context.message_pages.load(
            (chat, request.size, request.key, request.backward)
        )
        return connection(page, self._message, self.messages_count)

    @strawberry.field(description="The message with this number, or null.")
    async def message(self, info: Info, number: int) -> Message | None:
        chat_id = await self._chat_id(info)
        if chat_id is None:
            return None
        found = await info.context.messages.load((chat_id, number))
        return self._message(found) if found else None

    @strawberry.field(
        description="Messages containing every white-space separated term of `query` "
        "(case-insensitive substrings), newest first: `first` after `after`, or the `last` "
        "before `before` (the oldest matches without it), each page still newest first."
    )
    async def search_messages(
        self,
        info: Info,
        query: str,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Message]:
        service = info.context.service
        request = page_request(service.settings, "search", PAGING, first, after, last, before)
        terms = service.reads.search_terms(query)
        chat_id = await self._chat_id(info)
        if chat_id is None:
            return connection(Page[domain.Message]([], [], False), self._message)
        key = (chat_id, terms, request.size, request.key, request.backward)
        page = await info.context.search_pages.load(key)
        return connection(page, self._message)


@strawberry.type(description="An application: the owner of chats, addressed by its token.")
class Application(Node):
    token: str
    db_id: strawberry.Private[int]
    # The stored row, or None until a field that needs it is asked for (`lazy`).
    found: strawberry.Private[domain.Application | None]

    @classmethod
    def of(cls, application: domain.Application) -> Application:
        return cls(token=application.token, db_id=application.id, found=application)

    @classmethod
    def lazy(cls, application_id: int, token: str) -> Application:
        """An application known to exist (tokens and ids never change): its name and count
        are read only if a query asks for them, so reaching its chats costs no read."""
        return cls(token=token, db_id=application_id, found=None)

    @strawberry.field
    def name(self, info: Info) -> str:
        return self.found.name if self.found else self._stored(info, "name")  # type: ignore[return-value]

    @strawberry.field
    def chats_count(self, info: Info) -> int:
        return self.found.chats_count if self.found else self._stored(info, "chats_count")  # type: ignore[return-value]

    async def _stored(self, info: Info, field: str) -> object:
        if self.found is None:
            self.found = await info.context.applications.load(self.token)
            if self.found is None:
                raise NotFound("application not found")
        return getattr(self.found, field)

    @strawberry.field(
        description="Names the application in its users' tokens (their `iss` claim) and in "
        "the REST paths a user calls; reveals nothing."
    )
    async def public_id(self, info: Info) -> str:
        return str(await self._stored(info, "public_id"))

    @strawberry.field(
        description="Whether the application's users may create chats and add members to "
        "the chats they are in (else only its backend may)."
    )
    async def users_manage_chats(self, info: Info) -> bool:
        return bool(await self._stored(info, "users_manage_chats"))

    @strawberry.field(
        description="The secret the application's backend signs its users' tokens with "
        "(HS256). Keep it on the backend, as the token."
    )
    async def signing_secret(self, info: Info) -> str:
        return (await info.context.service.users.signing_keys(self.token)).secret

    @strawberry.field(
        description="The secret the last rotation replaced, while tokens signed with it "
        "still verify (until previousSigningSecretValidUntil); else null."
    )
    async def previous_signing_secret(self, info: Info) -> str | None:
        keys = await info.context.service.users.signing_keys(self.token)
        return keys.previous if len(keys.verifying(domain.now_micros())) > 1 else None

    @strawberry.field(description="Until when the previous signing secret verifies, or null.")
    async def previous_signing_secret_valid_until(self, info: Info) -> datetime | None:
        keys = await info.context.service.users.signing_keys(self.token)
        if len(keys.verifying(domain.now_micros())) < 2 or keys.previous_until is None:
            return None
        return domain.instant(keys.previous_until)

    @strawberry.field(description="The application's global id (opaque).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(domain.global_id("Application", self.db_id, self.token))

    def _chat(self, chat: domain.Chat) -> Chat:
        return Chat.of(chat, self.token)

    @strawberry.field(
        description="Chats in ascending number order: `first` after `after`, or the `last` "
        "before `before` (the newest without it)."
    )
    async def chats(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Chat]:
        request = page_request(
            info.context.service.settings, "chat", PAGING, first, after, last, before
        )
        key = (self.db_id, request.size, request.key, request.backward)
        if self.found is None:  # the count comes with the row: read both at once
            page, total = await asyncio.gather(
                info.context.chat_pages.load(key), self._stored(info, "chats_count")
            )
            return connection(page, self._chat, int(str(total)))
        page = await info.context.chat_pages.load(key)
        return connection(page, self._chat, self.found.chats_count)

    @strawberry.field(description="The chat with this number, or null.")
    async def chat(self, info: Info, number: int) -> Chat | None:
        found = await info.context.chats.load((self.db_id, number))
        return self._chat(found) if found else None


strawberry.enum(EventKind, description="What happened to the object.")


@strawberry.type(description="A message of a chat was stored: created, or its body updated.")
class MessageEvent:
    kind: EventKind
    message: Message
    shared: strawberry.Private[bool] = False  # sent to every subscriber of the chat


@strawberry.type(description="A chat of an application was stored.")
class ChatEvent:
    kind: EventKind
    chat: Chat
    shared: strawberry.Private[bool] = False
