"""The mutations' inputs and payloads (the resolvers are `schema.Mutation`'s)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graphql_chat.graphql.types import Application, Chat, Message


@strawberry.input
class CreateApplicationInput:
    name: str


@strawberry.input
class UpdateApplicationInput:
    token: str
    name: str | None = strawberry.field(
        default=None, description="The new name (leave out to keep it)."
    )
    users_manage_chats: bool | None = strawberry.field(
        default=None,
        description="Whether the application's users may create chats and add members to "
        "the chats they are in (leave out to keep it).",
    )


_CALLER = (
    "The application's token (its backend); leave out when sending a user token "
    "(Authorization: Bearer <user token>): the write is then that user's."
)


@strawberry.input
class CreateChatInput:
    application_token: str | None = strawberry.field(default=None, description=_CALLER)
    members: list[str] | None = strawberry.field(
        default=None,
        description="Users who are members from the start (up to 100; a user who creates "
        "the chat is one anyway). Unlike addChatMembers, this needs no worker to have stored "
        "the chat: the members can act as soon as the chat's number comes back.",
    )
    idempotency_key: str | None = strawberry.field(
        description="Makes retries safe: within the window (24 hours by default) a create "
        "with the same key in the same application answers what the first one made and "
        "creates nothing more; the same key with another create is a CONFLICT error. Any "
        "text of 1 to 255 printable characters, for example a UUID made by the client."
    )


@strawberry.input
class CreateMessageInput:
    chat_number: int
    body: str
    idempotency_key: str | None = strawberry.field(
        description="Makes retries safe: within the window (24 hours by default) a create "
        "with the same key in the same application answers what the first one made and "
        "creates nothing more; the same key with another create is a CONFLICT error. Any "
        "text of 1 to 255 printable characters, for example a UUID made by the client."
    )
    application_token: str | None = strawberry.field(default=None, description=_CALLER)


@strawberry.input
class UpdateMessageInput:
    chat_number: int
    number: int
    body: str
    application_token: str | None = strawberry.field(default=None, description=_CALLER)


@strawberry.input
class ChatMembersInput:
    chat_number: int
    user_ids: list[str] = strawberry.field(description="1 to 100 user ids.")
    application_token: str | None = strawberry.field(default=None, description=_CALLER)


@strawberry.type
class ChatMembersPayload:
    chat_number: int
    user_ids: list[str] = strawberry.field(
        description="Those this call changed: added (not members before), or removed."
    )


@strawberry.input
class CreateUserTokenInput:
    application_token: str
    user_id: str = strawberry.field(
        description="The application's own id for the person: 1 to 255 printable characters."
    )
    expires_in: int | None = strawberry.field(
        default=None,
        description="Seconds until it expires (USER_TOKEN_LIFETIME_SECONDS by default, at most "
        "USER_TOKEN_MAX_LIFETIME_SECONDS).",
    )


@strawberry.type
class CreateUserTokenPayload:
    token: str = strawberry.field(description="A JWT (HS256) to send as Authorization: Bearer.")
    user_id: str
    expires_at: datetime


@strawberry.input
class RotateSigningSecretInput:
    token: str = strawberry.field(description="The application's token.")
    previous_valid_for: int | None = strawberry.field(
        default=None,
        description="Seconds the replaced secret still verifies tokens "
        "(SIGNING_SECRET_OVERLAP_SECONDS by default; 0 ends it at once, as after a leak).",
    )


@strawberry.type
class RotateSigningSecretPayload:
    application: Application


@strawberry.input
class RevokeUserTokensInput:
    application_token: str
    user_id: str
    issued_before: datetime | None = strawberry.field(
        default=None, description="Refuse the user's tokens issued before this (now by default)."
    )


@strawberry.type
class RevokeUserTokensPayload:
    user_id: str
    issued_before: datetime = strawberry.field(
        description="The user's tokens issued before this are refused."
    )


@strawberry.type
class CreateApplicationPayload:
    application: Application


@strawberry.type
class UpdateApplicationPayload:
    application: Application


@strawberry.type
class CreateChatPayload:
    chat: Chat


@strawberry.type
class CreateMessagePayload:
    message: Message


@strawberry.type
class UpdateMessagePayload:
    message: Message
