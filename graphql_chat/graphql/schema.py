"""Queries, mutations, and the schema with its caches, limits and error codes."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError, GraphQLObjectType
from graphql.error import GraphQLSyntaxError
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import StreamResult
from strawberry.types import ExecutionContext, ExecutionResult

from graphql_chat import domain
from graphql_chat.config import Settings
from graphql_chat.errors import ChatError, InvalidInput, NotFound
from graphql_chat.graphql.connections import PAGING, Connection, connection
from graphql_chat.graphql.context import Info
from graphql_chat.graphql.documents import DocumentCache, Documents
from graphql_chat.graphql.events import SharedEvents
from graphql_chat.graphql.inputs import (
    ChatMembersInput,
    ChatMembersPayload,
    CreateApplicationInput,
    CreateApplicationPayload,
    CreateChatInput,
    CreateChatPayload,
    CreateMessageInput,
    CreateMessagePayload,
    CreateUserTokenInput,
    CreateUserTokenPayload,
    RevokeUserTokensInput,
    RevokeUserTokensPayload,
    RotateSigningSecretInput,
    RotateSigningSecretPayload,
    UpdateApplicationInput,
    UpdateApplicationPayload,
    UpdateMessageInput,
    UpdateMessagePayload,
)
from graphql_chat.graphql.limits import Limits
from graphql_chat.graphql.nodes import find_nodes
from graphql_chat.graphql.reading import ReadingMutations, Viewer
from graphql_chat.graphql.types import (
    DATETIME,
    Application,
    Chat,
    ChatEvent,
    Message,
    MessageEvent,
    Node,
)
from graphql_chat.web.paging import page_request
from graphql_chat.web.renderings import Renderings

log = logging.getLogger(__name__)
# A live event as GraphQL sends it, made once for all the event's subscribers.
_MESSAGE_EVENTS: Renderings[MessageEvent] = Renderings()
_CHAT_EVENTS: Renderings[ChatEvent] = Renderings()


@strawberry.type
class Query:
    @strawberry.field(
        description="Every application, oldest first (an admin operation: send "
        "`Authorization: Bearer ADMIN_TOKEN`)."
    )
    async def applications(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Application]:
        service = info.context.service
        service.admin.authorize(info.context.authorization)
        page = await service.applications.page(
            page_request(service.settings, "application", PAGING, first, after, last, before)
        )
        return connection(page, Application.of)

    @strawberry.field(
        description="The object with this global id, or null: an id that names nothing, or "
        "that was not made from its application's token."
    )
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return (await _nodes(info, [id]))[0]

    @strawberry.field(description="The objects with these global ids, in order (at most 100).")
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        if len(ids) > info.context.service.settings.max_page_size:
            raise InvalidInput(
                f"at most {info.context.service.settings.max_page_size} ids at once", "ids"
            )
        return await _nodes(info, ids)

    @strawberry.field(
        description="The person the request's user token names (Authorization: Bearer "
        "<user token>; over a WebSocket, `authorization` in connection_init's payload), or "
        "null without one."
    )
    async def viewer(self, info: Info) -> Viewer | None:
        user = await info.context.user()
        if user is None:
            return None
        await info.context.reading(user)
        return Viewer(user=user)

    @strawberry.field(description="The application with this token, or null when unknown.")
    async def application(self, info: Info, token: str) -> Application | None:
        try:  # tokens never change: a known one is found without the store
            app_id = await info.context.service.directory.application_id(token)
        except NotFound:
            return None
        await info.context.limited(info.context.service.throttle.application(app_id))
        return Application.lazy(app_id, token)


async def _nodes(info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
    user = await info.context.user()
    if user is not None:
        await info.context.reading(user)
    service = info.context.service
    found_nodes = await find_nodes(service, list(ids), user)
    if user is not None:  # only what the user's chats hold
        numbers = [
            item.number if isinstance(item, domain.Chat) else item[0].number
            for found in found_nodes
            if found is not None
            for item in (found[1],)
            if not isinstance(item, domain.Application)
        ]
        allowed = await service.members.member_of(user, numbers)
    shaped: list[Node | None] = []
    for found in found_nodes:
        if found is None:
            shaped.append(None)
            continue
        app, item = found
        scoped = user is not None
        if isinstance(item, domain.Application):
            shaped.append(None if scoped else Application.of(item))
        elif isinstance(item, domain.Chat):
            visible = not scoped or item.number in allowed
            shaped.append(Chat.of(item, app.token, scoped) if visible else None)
        else:
            chat, message = item
            visible = not scoped or chat.number in allowed
            shaped.append(
                Message.of(message, (app.id, app.token), chat.number, scoped) if visible else None
            )
    return shaped


@strawberry.type
class Mutation(ReadingMutations):
    @strawberry.mutation(description="Create an application; the server generates its token.")
    async def create_application(
        self, info: Info, input: CreateApplicationInput
    ) -> CreateApplicationPayload:
        await info.context.anonymous()
        created = await info.context.service.applications.create(input.name)
        return CreateApplicationPayload(application=Application.of(created))

    @strawberry.mutation(
        description="Rename an application, or set whether its users manage chats."
    )
    async def update_application(
        self, info: Info, input: UpdateApplicationInput
    ) -> UpdateApplicationPayload:
        updated = await info.context.service.applications.update(
            await info.context.backend(input.token), input.name, input.users_manage_chats
        )
        return UpdateApplicationPayload(application=Application.of(updated))

    @strawberry.mutation(
        description="Create a chat; returns its number in the application. A user who "
        "creates one is its first member."
    )
    async def create_chat(self, info: Info, input: CreateChatInput) -> CreateChatPayload:
        service = info.context.service
        token, user = await info.context.caller(input.application_token)
        app_id = await service.directory.application_id(token)
        created = await service.chats.create(token, input.idempotency_key, user, input.members)
        return CreateChatPayload(
            chat=Chat(
                number=created.number,
                messages_count=0,
                created_at=created.created_at,
                application_id=app_id,
                db_id=None,
                token=token,
                scoped=user is not None,
            )
        )

    @strawberry.mutation(description="Create a message; returns its number in the chat.")
    async def create_message(self, info: Info, input: CreateMessageInput) -> CreateMessagePayload:
        service = info.context.service
        token, user = await info.context.caller(input.application_token)
        created = await service.messages.create(
            token, input.chat_number, input.body, input.idempotency_key, user
        )
        owner = (await service.directory.application_id(token), token)
        return CreateMessagePayload(
            message=Message.of(created, owner, input.chat_number, user is not None)
        )

    @strawberry.mutation(
        description="Replace a message's body; the last accepted update wins. A user edits "
        "only their own messages."
    )
    async def update_message(self, info: Info, input: UpdateMessageInput) -> UpdateMessagePayload:
        service = info.context.service
        token, user = await info.context.caller(input.application_token)
        updated = await service.messages.update(
            token, input.chat_number, input.number, input.body, user
        )
        owner = (await service.directory.application_id(token), token)
        return UpdateMessagePayload(
            message=Message.of(updated, owner, input.chat_number, user is not None)
        )

    @strawberry.mutation(
        description="Add users to a chat (idempotent: members stay as they are). The "
        "backend adds anyone; a member adds others unless the application lets only its "
        "backend (usersManageChats)."
    )
    async def add_chat_members(self, info: Info, input: ChatMembersInput) -> ChatMembersPayload:
        token, user = await info.context.caller(input.application_token)
        added = await info.context.service.members.add(
            token, input.chat_number, input.user_ids, user
        )
        return ChatMembersPayload(chat_number=input.chat_number, user_ids=added)

    @strawberry.mutation(
        description="Remove users from a chat (idempotent); their open subscriptions to it "
        "end. A user may remove only themselves (leave)."
    )
    async def remove_chat_members(self, info: Info, input: ChatMembersInput) -> ChatMembersPayload:
        token, user = await info.context.caller(input.application_token)
        removed = await info.context.service.members.remove(
            token, input.chat_number, input.user_ids, user
        )
        return ChatMembersPayload(chat_number=input.chat_number, user_ids=removed)

    @strawberry.mutation(
        description="A user token for one of the application's users (the backend may also "
        "sign one itself with the signing secret, without asking)."
    )
    async def create_user_token(
        self, info: Info, input: CreateUserTokenInput
    ) -> CreateUserTokenPayload:
        minted = await info.context.service.users.mint(
            await info.context.backend(input.application_token), input.user_id, input.expires_in
        )
        return CreateUserTokenPayload(
            token=minted.token, user_id=minted.user_id, expires_at=minted.expires_at
        )

    @strawberry.mutation(
        description="A new signing secret; tokens signed with the replaced one still verify "
        "for previousValidFor seconds, so rotating logs no one out at once."
    )
    async def rotate_signing_secret(
        self, info: Info, input: RotateSigningSecretInput
    ) -> RotateSigningSecretPayload:
        service = info.context.service
        await service.users.rotate(
            await info.context.backend(input.token), input.previous_valid_for
        )
        application = await service.directory.require_application(input.token)
        return RotateSigningSecretPayload(application=Application.of(application))

    @strawberry.mutation(description="Refuse one user's tokens issued before a time.")
    async def revoke_user_tokens(
        self, info: Info, input: RevokeUserTokensInput
    ) -> RevokeUserTokensPayload:
        held = await info.context.service.users.revoke(
            await info.context.backend(input.application_token), input.user_id, input.issued_before
        )
        return RevokeUserTokensPayload(user_id=input.user_id, issued_before=held)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Messages of a chat as they are stored, created and updated, in the order "
        "they were stored. With afterNumber, first every stored message numbered above it "
        "(oldest first), then live."
    )
    async def message_events(
        self,
        info: Info,
        chat_number: int,
        after_number: int | None = None,
        application_token: str | None = None,
    ) -> AsyncGenerator[MessageEvent, None]:
        context = info.context
        token, user = await context.caller(application_token, writes=False)
        service = context.service
        events = await service.subscriptions.message_events(
            token,
            chat_number,
            after_number,
            context.slow,
            user,
            service.settings.access_recheck_ms / 1000,
        )
        # Every subscriber of a chat is of its application: one owner for the views, one
        # view for its backend's subscribers and one for its users'.
        owner = (await service.directory.application_id(token), token)
        scoped = user is not None
        async with aclosing(events):
            async for event in events:
                context.fresh()
                view = _MESSAGE_EVENTS.get(event, scoped)
                if view is None:
                    view = _MESSAGE_EVENTS.keep(
                        event,
                        scoped,
                        MessageEvent(
                            kind=event.kind,
                            message=Message.of(event.item, owner, chat_number, scoped),
                            shared=event.shared,
                        ),
                    )
                yield view

    @strawberry.subscription(description="Chats of an application as they are stored.")
    async def chat_events(
        self, info: Info, application_token: str
    ) -> AsyncGenerator[ChatEvent, None]:
        context = info.context
        await context.backend(application_token)
        events = await context.service.subscriptions.chat_events(application_token, context.slow)
        async with aclosing(events):
            async for event in events:
                context.fresh()
                view = _CHAT_EVENTS.get(event, None)
                if view is None:
                    chat = event.item
                    view = _CHAT_EVENTS.keep(
                        event,
                        None,
                        ChatEvent(
                            kind=event.kind,
                            chat=Chat(
                                number=chat.number,
                                messages_count=0,
                                created_at=chat.created_at,
                                application_id=chat.application_id,
                                db_id=chat.chat_id,
                                token=application_token,
                            ),
                            shared=event.shared,
                        ),
                    )
                yield view


def coded(error: GraphQLError) -> GraphQLError:
    """The error with `extensions.code`, by what raised it; an unexpected error becomes a
    generic one. Parse and validation errors are coded where the document is checked
    (`documents.py`); what is left of graphql-core's own is input that did not fit the
    schema's types (variables, arguments)."""
    original = error.original_error
    if error.extensions and "code" in error.extensions:
        return error
    if isinstance(original, ChatError):
        code, message = original.code, original.message
    elif isinstance(error, GraphQLSyntaxError) or isinstance(original, GraphQLSyntaxError):
        code, message = "GRAPHQL_PARSE_FAILED", error.message
    elif original is None or isinstance(original, GraphQLError):
        code, message = "BAD_USER_INPUT", error.message
    else:
        code, message = "INTERNAL_SERVER_ERROR", "Internal server error"
    return GraphQLError(
        message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={**(error.extensions or {}), "code": code},
    )


# What a client's request caused: answered, never logged as ours (an operation of a type the
# transport does not run, such as a subscription over HTTP, is the client's).
_CLIENT_ERRORS = (ChatError, GraphQLError, InvalidOperationTypeError, CannotGetOperationTypeError)


class ChatSchema(strawberry.Schema):
    async def stream(self, *args: Any, **kwargs: Any) -> StreamResult:
        """Any operation over a WebSocket, its errors coded as over HTTP."""
        return _coded(await super().stream(*args, **kwargs))

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log what is ours to fix; errors a client caused are answered, not logged."""
        for error in errors:
            original = error.original_error
            if original is not None and not isinstance(original, _CLIENT_ERRORS):
                log.error("unexpected error in %s", error.path, exc_info=original)


async def _coded(results: StreamResult) -> StreamResult:
    async with aclosing(results):
        async for result in results:
            if isinstance(result, ExecutionResult) and result.errors:
                result.errors = [coded(error) for error in result.errors]
            yield result


def build_schema(settings: Settings, listed: dict[str, str] | None = None) -> strawberry.Schema:
    """`listed`: a persisted query list's operations by hash, the only ones that may run."""
    documents = Documents(
        max_bytes=settings.max_query_bytes,
        max_tokens=settings.max_query_tokens,
        limits=Limits(
            max_depth=settings.max_query_depth,
            max_fields=settings.max_query_fields,
            max_aliases=settings.max_query_aliases,
            max_cost=settings.max_query_cost,
            default_page_size=settings.default_page_size,
            max_page_size=settings.max_page_size,
        ),
        paged=(),
        listed=None if listed is None else listed.keys(),
    )
    # A factory, not an instance: an extension instance must not be shared by requests.
    built = ChatSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[partial(DocumentCache, documents)],
        execution_context_class=SharedEvents,
        config=StrawberryConfig(scalar_map={datetime: DATETIME}),
    )
    documents.paged = frozenset(_paged_fields(built))
    return built


def _paged_fields(built: strawberry.Schema) -> set[str]:
    """The fields that return a page: those taking `first`."""
    return {
        name
        for graphql_type in built._schema.type_map.values()
        if isinstance(graphql_type, GraphQLObjectType) and not graphql_type.name.startswith("__")
        for name, field in graphql_type.fields.items()
        if "first" in field.args
    }
