"""Relay object identification: the objects global ids name, each with its application."""

from __future__ import annotations

from collections.abc import Sequence

from graphql_chat.domain import (
    Application,
    Chat,
    Message,
    NodeId,
    User,
    parse_global_id,
    user_scope,
)
from graphql_chat.usecases import ChatService

# A node as found: its application, and the application, a chat, or a chat's message.
Node = tuple[Application, Application | Chat | tuple[Chat, Message]]


async def find_nodes(
    service: ChatService, ids: Sequence[object], user: User | None = None
) -> list[Node | None]:
    """The objects these ids name, in order; None for an id that is not one, was not signed
    with its application's token, or names nothing stored. For a `user`, only ids of their
    application, signed with its token or as shown to its users (`user_scope`); the caller
    keeps what their chats hold."""
    parsed = [parse_global_id(value) for value in ids]
    if user is not None:
        parsed = [p if p and p.application_id == user.application_id else None for p in parsed]
    apps = await service.applications.by_ids(
        sorted({p.application_id for p in parsed if p is not None})
    )

    def signed(p: NodeId | None) -> bool:
        if p is None or p.application_id not in apps:
            return False
        token = apps[p.application_id].token
        return p.signed_by(token) or (user is not None and p.signed_by(user_scope(token)))

    valid = [p if signed(p) else None for p in parsed]
    chat_keys = [(p.application_id, p.numbers[0]) for p in valid if p and p.kind != "Application"]
    chats = await service.directory.chats(chat_keys) if chat_keys else {}
    message_keys = [
        (chats[(p.application_id, p.numbers[0])].id, p.numbers[1])
        for p in valid
        if p and p.kind == "Message" and (p.application_id, p.numbers[0]) in chats
    ]
    messages = await service.messages.by_keys(message_keys) if message_keys else {}
    answers: list[Node | None] = []
    for p in valid:
        if p is None:
            answers.append(None)
            continue
        app = apps[p.application_id]
        chat = chats.get((p.application_id, p.numbers[0])) if p.numbers else None
        message = messages.get((chat.id, p.numbers[1])) if chat and p.kind == "Message" else None
        if p.kind == "Application":
            answers.append((app, app))
        elif p.kind == "Chat" and chat is not None:
            answers.append((app, chat))
        elif p.kind == "Message" and chat is not None and message is not None:
            answers.append((app, (chat, message)))
        else:
            answers.append(None)
    return answers
