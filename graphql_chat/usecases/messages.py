"""Messages: numbered in their chat as they are accepted, edited, found."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from graphql_chat.config import Settings
from graphql_chat.domain import (
    UNKNOWN_TIME,
    Message,
    MessageWritten,
    User,
    claim,
    clean_body,
    instant,
    parse_number,
)
from graphql_chat.errors import Forbidden, NotFound
from graphql_chat.ports import ChatRecords, Numbers
from graphql_chat.usecases.acceptance import Acceptance
from graphql_chat.usecases.directory import Directory
from graphql_chat.usecases.members import Members


class Messages:
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
        chat_number: object,
        body: object,
        idempotency_key: object = None,
        user: User | None = None,
    ) -> Message:
        """A new message. With an idempotency key, a retry within the window (the same chat
        and body) answers the message the key's first create made, and makes nothing more;
        the same key with another chat or body is a `Conflict`. A user writes only in the
        chats they are a member of, and is the message's author."""
        number_in = parse_number(chat_number, "chat number")
        body = clean_body(body, self._settings.max_body_length)
        if user is not None:
            await self._members.require(user, number_in)
        author = None if user is None else user.id
        window = self._settings.idempotency_window_seconds
        claimed = (
            None
            if idempotency_key is None
            else claim(idempotency_key, window, "message", number_in, body, author)
        )
        app_id = await self._directory.application_id(token)
        drawn = await self._numbers.draw_message(app_id, number_in, claimed)
        event = MessageWritten(
            app_id,
            number_in,
            drawn.number,
            body,
            drawn.revision,
            drawn.epoch,
            created=True,
            at=drawn.at,
            claim=claimed,
            author=author,
        )
        if not drawn.durable:
            await self._acceptance.accept(event, drawn)
        at = instant(drawn.at)
        return Message(number=drawn.number, body=body, created_at=at, updated_at=at, author=author)

    async def update(
        self,
        token: str,
        chat_number: object,
        number: object,
        body: object,
        user: User | None = None,
    ) -> Message:
        """A message's new body. A user edits only their own messages (the backend any)."""
        chat_in = parse_number(chat_number, "chat number")
        number_in = parse_number(number, "message number")
        body = clean_body(body, self._settings.max_body_length)
        author = None
        if user is not None:
            await self._members.require(user, chat_in)
            stored = await self._acceptance.stored(lambda: self.require(token, chat_in, number_in))
            if stored.author != user.id:
                raise Forbidden("a user may edit only their own messages")
            author = user.id
        app_id = await self._directory.application_id(token)
        drawn = await self._numbers.revise_message(app_id, chat_in, number_in)
        event = MessageWritten(
            app_id, chat_in, number_in, body, drawn.revision, drawn.epoch, at=drawn.at
        )
        await self._acceptance.accept(event, drawn)
        # When its create was accepted is the store's to say (`created_at`).
        return Message(
            number=number_in,
            body=body,
            created_at=UNKNOWN_TIME,
            updated_at=instant(drawn.at),
            author=author,
        )

    async def created_at(self, token: str, chat_number: object, number: object) -> datetime:
        """When a message's create was accepted, as stored. In the distributed mode a message
        is acknowledged once queued, so one just created is waited for a little (`NotFound`
        then; `Unavailable` while the store is)."""
        chat_in = parse_number(chat_number, "chat number")
        number_in = parse_number(number, "message number")

        async def read() -> datetime:
            chat_id = await self._directory.chat_id(token, chat_in)
            found = (await self._store.messages_by_number([(chat_id, number_in)])).get(
                (chat_id, number_in)
            )
            if found is None:
                raise NotFound(f"message {number_in} not found in chat {chat_in}")
            return found.created_at

        return await self._acceptance.stored(read)

    async def by_keys(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Message]:
        """Messages by (chat id, number)."""
        return await self._store.messages_by_number(keys)

    async def require(self, token: str, chat_number: object, number: object) -> Message:
        chat = await self._directory.require_chat(token, chat_number)
        number_in = parse_number(number, "message number")
        message = (await self._store.messages_by_number([(chat.id, number_in)])).get(
            (chat.id, number_in)
        )
        if message is None:
            raise NotFound(f"message {number_in} not found in chat {chat.number}")
        return message
