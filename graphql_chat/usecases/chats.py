"""Chats: numbered as they are accepted, listed per application."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from graphql_chat.config import Settings
from graphql_chat.domain import Chat, ChatCreated, User, claim, instant
from graphql_chat.errors import Forbidden
from graphql_chat.paging import Page, PageRequest, make_page
from graphql_chat.ports import ChatRecords, Numbers
from graphql_chat.usecases.acceptance import Acceptance
from graphql_chat.usecases.directory import Directory
from graphql_chat.usecases.members import Members


@dataclass(frozen=True, slots=True)
class NewChat:
    """A chat accepted: its number, and when."""

    number: int
    created_at: datetime


class Chats:
    def __init__(
        self,
        settings: Settings,
        store: ChatRecords,
        numbers: Numbers,
        directory: Directory,
        acceptance: Acceptance,
        members: Members,
    ) -> None:
        self._settings = settings
        self._store = store
        self._numbers = numbers
        self._directory = directory
        self._acceptance = acceptance
        self._members = members

    async def create(
        self,
        token: str,
        idempotency_key: object = None,
        user: User | None = None,
        members: object = None,
    ) -> NewChat:
        """A new chat. With an idempotency key, a retry within the window answers the chat
        the key's first create made, and makes nothing more. A user who creates a chat is
        its first member (unless the application lets only its backend create chats);
        `members`: user ids who are members from the start, as the creator is."""
        if user is not None and not user.manage_chats:
            raise Forbidden("this application lets only its backend create chats")
        others = [] if members is None else self._members.user_ids(members, "members")
        window = self._settings.idempotency_window_seconds
        meaning = ("chat",) if user is None else ("chat", user.id)
        if others:  # (a create without members means what it meant before members)
            meaning = (*meaning, "members", *others)
        claimed = None if idempotency_key is None else claim(idempotency_key, window, *meaning)
        app_id = await self._directory.application_id(token)
        drawn = await self._numbers.next_chat(app_id, claimed)
        if user is not None or others:  # members before anyone learns the number
            await self._members.join_created(app_id, drawn.number, user, others)
        event = ChatCreated(app_id, drawn.number, drawn.epoch, drawn.at, claimed)
        if not drawn.durable:  # a retry of a write maybe not stored yet: it is, once this is
            await self._acceptance.accept(event, drawn)
        return NewChat(drawn.number, instant(drawn.at))

    async def pages(
        self, application_ids: Sequence[int], request: PageRequest
    ) -> dict[int, Page[Chat]]:
        found = await self._store.list_chats(
            application_ids, request.key, request.size + 1, request.backward
        )
        return {
            app_id: make_page("chat", rows, request, lambda c: c.number)
            for app_id, rows in found.items()
        }
