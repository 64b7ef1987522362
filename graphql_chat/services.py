"""The use cases. GraphQL resolvers and REST handlers call these and nothing below them."""

from __future__ import annotations

import asyncio
import hmac
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Generic, TypeVar

from graphql_chat import retry
from graphql_chat.config import Settings
from graphql_chat.domain import (
    UNKNOWN_TIME,
    Application,
    Chat,
    ChatCreated,
    Claim,
    CursorKind,
    Event,
    Message,
    MessageWritten,
    claim,
    clean_body,
    clean_name,
    clean_token,
    decode_cursor,
    encode_cursor,
    instant,
    new_token,
    page_size,
    parse_global_id,
    parse_number,
    search_terms,
)
from graphql_chat.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    OutcomeUnknown,
    TokenClash,
    Unauthenticated,
    Unavailable,
)
from graphql_chat.live import Hub, LiveEvent
from graphql_chat.numbering.ports import Reopening
from graphql_chat.pages import PageCache, Reading
from graphql_chat.ports import (
    Drawn,
    IndexedMessage,
    Numbers,
    Pipeline,
    Search,
    Store,
    StoredChat,
)

T = TypeVar("T")

# A Relay node as found: its application, and the application, a chat, or a chat's message.
Node = tuple[Application, Application | Chat | tuple[Chat, Message]]

_CACHE_SIZE = 100_000  # tokens, and chat ids, remembered per process
_STORED_WAIT = 5.0  # seconds a subscription waits for a queued chat to be stored
_FIRST_WAIT = 0.05  # seconds before it looks again, then twice as long each time (up to 1)
_WAITERS = 256  # subscriptions of one process waiting so at once
_SETTLE_WITHIN = 5.0  # seconds a write overtaken by a numbering reset waits to learn its fate


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Items in the list's order (ascending; newest first for a search), whichever way the
    page was asked for, with the key each one's cursor carries (cursors are made only when
    asked for: most pages need two)."""

    items: list[T]
    keys: list[int]
    has_next: bool
    has_previous: bool = False
    kind: CursorKind = "message"
    # What an interface made of the page, by what made it (a REST body): a page kept by the
    # page cache is made into each once.
    renderings: dict[object, bytes] = field(default_factory=dict, compare=False, repr=False)

    @property
    def cursors(self) -> list[str]:
        return [encode_cursor(self.kind, key) for key in self.keys]

    @property
    def start_cursor(self) -> str | None:
        return encode_cursor(self.kind, self.keys[0]) if self.keys else None

    @property
    def end_cursor(self) -> str | None:
        return encode_cursor(self.kind, self.keys[-1]) if self.keys else None


@dataclass(frozen=True, slots=True)
class NewChat:
    """A chat accepted: its number, and when."""

    number: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A validated page: its size, and the key its cursor carried (the page starts past it).
    `backward`: the page ends before the key instead (the newest page when there is none)."""

    size: int
    key: int | None
    backward: bool = False


@dataclass(frozen=True, slots=True)
class Paging:
    """What an interface calls a page's size and cursor, forward and backward (its errors
    use these names)."""

    size: str
    cursor: str
    last: str = "last"
    before: str = "before"


def _page(
    kind: CursorKind, rows: list[T], request: PageRequest, key: Callable[[T], int]
) -> Page[T]:
    """A page from the rows a store gave for `request` (one more than asked, to know whether
    more follow; in the reverse of the list's order when backward). Cursors are made from
    rows, which are never
    deleted, so a page that starts past a cursor has rows on the cursor's side."""
    more = len(rows) > request.size
    items = rows[: request.size]
    if request.backward:
        items.reverse()
        has_next, has_previous = request.key is not None, more
    else:
        has_next, has_previous = more, request.key is not None
    return Page(items, [key(item) for item in items], has_next, has_previous, kind)


def _number(message: Message) -> int:
    return message.number


def page_bytes(page: Page[Message]) -> int:
    """About what a page of messages kept in memory holds: its messages and a rendering."""
    return 200 + sum(400 + 2 * sys.getsizeof(message.body) for message in page.items)


class ChatService:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        numbers: Numbers,
        pipeline: Pipeline,
        search: Search,
        hub: Hub,
        pages: PageCache[Page[Message]] | None = None,
        reopening: Reopening | None = None,
    ) -> None:
        """`reopening`: where a write overtaken by a numbering reset learns when numbering
        is open again (None: numbering is never reset, as in the embedded mode)."""
        self.settings = settings
        self.reopening = reopening
        self.pages = pages  # the embedded mode's page cache (`graphql_chat.pages`)
        self.hub = hub
        self.store = store
        self.numbers = numbers
        self.pipeline = pipeline
        self.search_index = search
        self._tokens: dict[str, int] = {}
        self._chat_ids: dict[tuple[int, int], int] = {}
        self._waits = 0  # subscriptions waiting for their chat to be stored

    def page_request(
        self,
        kind: CursorKind,
        names: Paging,
        first: object = None,
        after: str | None = None,
        last: object = None,
        before: str | None = None,
    ) -> PageRequest:
        """Forward (`first` items after the `after` cursor) or backward (`last` items before
        the `before` cursor, the newest without one); the two ways do not mix."""
        default, maximum = self.settings.default_page_size, self.settings.max_page_size
        if last is None and before is None:
            size = page_size(first, default, maximum, names.size)
            return PageRequest(size, decode_cursor(kind, after, names.cursor))
        if first is not None or after is not None:
            raise InvalidInput(
                f"page forward with {names.size} and {names.cursor}, or backward with "
                f"{names.last} and {names.before}, not both",
                names.last if last is not None else names.before,
            )
        size = page_size(last, default, maximum, names.last)
        return PageRequest(size, decode_cursor(kind, before, names.before), backward=True)

    # -- applications --------------------------------------------------------------------------

    async def create_application(self, name: object) -> Application:
        name = clean_name(name, self.settings.max_name_length)
        for _ in range(5):
            try:
                application = await self.store.insert_application(new_token(), name)
            except TokenClash:
                continue
            self._remember(application)
            # Without it (Redis down), its first chat is numbered from the store instead.
            with suppress(Unavailable):
                await self.numbers.register_application(application.id, application.token)
            return application
        raise Unavailable("could not allocate a unique token; retry")

    async def update_application(self, token: str, name: object) -> Application:
        name = clean_name(name, self.settings.max_name_length)
        if clean_token(token) is None:
            raise NotFound("application not found")
        application = await self.store.rename_application(token, name)
        if application is None:
            raise NotFound("application not found")
        return application

    async def application(self, token: str) -> Application | None:
        if clean_token(token) is None:
            return None
        found = (await self.store.applications_by_token([token])).get(token)
        if found is not None:
            self._remember(found)
        return found

    async def require_application(self, token: str) -> Application:
        application = await self.application(token)
        if application is None:
            raise NotFound("application not found")
        return application

    async def application_id(self, token: str) -> int:
        """The application's id: tokens never change, so the process-local cache and the
        numbers port's shared one answer without the store (writes go on while it is down)."""
        app_id = self._tokens.get(token)
        if app_id is None:
            if clean_token(token) is None:
                raise NotFound("application not found")
            with suppress(Unavailable):  # then the store answers alone
                app_id = await self.numbers.application_id(token)
            if app_id is None:
                app_id = (await self.require_application(token)).id
                with suppress(Unavailable):
                    await self.numbers.remember_token(token, app_id)
            if len(self._tokens) >= _CACHE_SIZE:
                self._tokens.clear()
            self._tokens[token] = app_id
        return app_id

    def _remember(self, application: Application) -> None:
        if len(self._tokens) >= _CACHE_SIZE:
            self._tokens.clear()
        self._tokens[application.token] = application.id

    def authorize_admin(
        self, authorization: str | None, what: str = "listing applications"
    ) -> None:
        """Listing applications shows every token (and the metrics every operation's name
        and rate): it needs `Authorization: Bearer ADMIN_TOKEN`. Without ADMIN_TOKEN it
        stays open only on a loopback-bound server."""
        expected = self.settings.admin_token
        if expected is None:
            if self.settings.loopback:
                return
            raise Forbidden(
                f"{what} is disabled: this server is reachable from other "
                "machines and ADMIN_TOKEN is not set"
            )
        if not authorization:
            raise Unauthenticated(f"{what} needs Authorization: Bearer <ADMIN_TOKEN>")
        scheme, _, credential = authorization.partition(" ")
        given = credential.strip().encode("utf-8", "surrogatepass")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected.encode()):
            raise Forbidden("the admin credential is not valid")

    async def list_applications(self, request: PageRequest) -> Page[Application]:
        rows = await self.store.list_applications(request.key, request.size + 1, request.backward)
        return _page("application", rows, request, lambda a: a.id)

    # -- chats ---------------------------------------------------------------------------------

    async def create_chat(self, token: str, idempotency_key: object = None) -> NewChat:
        """A new chat. With an idempotency key, a retry within the window answers the chat
        the key's first create made, and makes nothing more."""
        claimed = self._claim(idempotency_key, "chat")
        app_id = await self.application_id(token)
        drawn = await self.numbers.next_chat(app_id, claimed)
        event = ChatCreated(app_id, drawn.number, drawn.epoch, drawn.at, claimed)
        if not drawn.durable:  # a retry of a write maybe not stored yet: it is, once this is
            await self._accept(event, drawn)
        return NewChat(drawn.number, instant(drawn.at))

    def _claim(self, idempotency_key: object, *meaning: object) -> Claim | None:
        if idempotency_key is None:
            return None
        return claim(idempotency_key, self.settings.idempotency_window_seconds, *meaning)

    async def _accept(self, event: Event, drawn: Drawn) -> None:
        """Make the write durable, then acknowledge it only if its numbering epoch is still
        open: a write confirmed after a Redis data loss is not acknowledged (it may be set
        aside once the epoch is retired), so every acknowledged write was queued before the
        recovery's drain began."""
        await self.pipeline.submit(event)
        try:
            if await self.numbers.still_open(event.application_id, drawn.epoch):
                return
        except Unavailable as error:
            raise OutcomeUnknown("numbering could not confirm the write's epoch") from error
        if isinstance(event, MessageWritten):
            await self._settle(event)
            return
        raise OutcomeUnknown("numbering was reset while the write was queued")

    async def _settle(self, event: MessageWritten) -> None:
        """A message write that a numbering reset overtook: once the next epoch is open, every
        write of the old one is stored or never will be, so the store knows the outcome."""
        unknown = "numbering was reset while the write was queued"
        if self.reopening is None:
            raise OutcomeUnknown(unknown)
        try:
            reopened = await self.reopening.reopened(event.application_id, within=_SETTLE_WITHIN)
            stored = (
                await self.store.message_revisions(
                    event.application_id, event.chat_number, event.number
                )
                if reopened
                else None
            )
        except Unavailable as error:
            raise OutcomeUnknown(unknown) from error
        if not reopened:
            raise OutcomeUnknown(unknown)
        if stored is not None and (
            stored[1] == event.revision if event.created else stored[0] >= event.revision
        ):
            return  # stored (an update may have been overtaken by a later one: as good)
        raise Unavailable("numbering was reset before the write was stored: not accepted; retry")

    async def chats(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Chat]:
        found = await self.store.chats_by_number(keys)
        for key, chat in found.items():
            self._learn(chat.id, key)
        return found

    def _learn(self, chat_id: int, key: tuple[int, int]) -> None:
        """Tell the page cache, if any, which chat `chat_id` is (writes name it by `key`)."""
        if self.pages is not None:
            self.pages.learn(chat_id, key)

    async def require_chat(self, token: str, number: object) -> Chat:
        chat_number = parse_number(number, "chat number")
        app_id = await self.application_id(token)
        chat = (await self.store.chats_by_number([(app_id, chat_number)])).get(
            (app_id, chat_number)
        )
        if chat is None:
            raise NotFound(f"chat {chat_number} not found")
        if len(self._chat_ids) >= _CACHE_SIZE:
            self._chat_ids.clear()
        self._chat_ids[(app_id, chat_number)] = chat.id
        self._learn(chat.id, (app_id, chat_number))
        return chat

    async def chat_id(self, token: str, number: object) -> int:
        """A chat's id: chat ids never change, so a chat this process has seen is found
        without the store (search goes on while it is down)."""
        chat_number = parse_number(number, "chat number")
        key = (await self.application_id(token), chat_number)
        found = self._chat_ids.get(key)
        if found is None:
            return (await self.require_chat(token, number)).id
        self._learn(found, key)
        return found

    async def chat_pages(
        self, application_ids: Sequence[int], request: PageRequest
    ) -> dict[int, Page[Chat]]:
        found = await self.store.list_chats(
            application_ids, request.key, request.size + 1, request.backward
        )
        for chats in found.values():
            for chat in chats:
                self._learn(chat.id, (chat.application_id, chat.number))
        return {
            app_id: _page("chat", rows, request, lambda c: c.number)
            for app_id, rows in found.items()
        }

    # -- messages ------------------------------------------------------------------------------

    async def create_message(
        self, token: str, chat_number: object, body: object, idempotency_key: object = None
    ) -> Message:
        """A new message. With an idempotency key, a retry within the window (the same chat
        and body) answers the message the key's first create made, and makes nothing more;
        the same key with another chat or body is a `Conflict`."""
        number_in = parse_number(chat_number, "chat number")
        body = clean_body(body, self.settings.max_body_length)
        claimed = self._claim(idempotency_key, "message", number_in, body)
        app_id = await self.application_id(token)
        drawn = await self.numbers.draw_message(app_id, number_in, claimed)
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
        )
        if not drawn.durable:
            await self._accept(event, drawn)
        at = instant(drawn.at)
        return Message(number=drawn.number, body=body, created_at=at, updated_at=at)

    async def update_message(
        self, token: str, chat_number: object, number: object, body: object
    ) -> Message:
        chat_in = parse_number(chat_number, "chat number")
        number_in = parse_number(number, "message number")
        body = clean_body(body, self.settings.max_body_length)
        app_id = await self.application_id(token)
        drawn = await self.numbers.revise_message(app_id, chat_in, number_in)
        event = MessageWritten(
            app_id, chat_in, number_in, body, drawn.revision, drawn.epoch, at=drawn.at
        )
        await self._accept(event, drawn)
        # When its create was accepted is the store's to say (`message_created_at`).
        return Message(
            number=number_in, body=body, created_at=UNKNOWN_TIME, updated_at=instant(drawn.at)
        )

    async def message_created_at(self, token: str, chat_number: object, number: object) -> datetime:
        """When a message's create was accepted, as stored. In the distributed mode a message
        is acknowledged once queued, so one just created is waited for a little (`NotFound`
        then; `Unavailable` while the store is)."""
        chat_in = parse_number(chat_number, "chat number")
        number_in = parse_number(number, "message number")

        async def read() -> datetime:
            chat_id = await self.chat_id(token, chat_in)
            found = (await self.store.messages_by_number([(chat_id, number_in)])).get(
                (chat_id, number_in)
            )
            if found is None:
                raise NotFound(f"message {number_in} not found in chat {chat_in}")
            return found.created_at

        return await self._stored(read)

    async def messages(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], Message]:
        return await self.store.messages_by_number(keys)

    async def require_message(self, token: str, chat_number: object, number: object) -> Message:
        chat = await self.require_chat(token, chat_number)
        number_in = parse_number(number, "message number")
        message = (await self.store.messages_by_number([(chat.id, number_in)])).get(
            (chat.id, number_in)
        )
        if message is None:
            raise NotFound(f"message {number_in} not found in chat {chat.number}")
        return message

    async def message_pages(
        self, chat_ids: Sequence[int], request: PageRequest
    ) -> dict[int, Page[Message]]:
        cache = self.pages
        which = (request.size, request.key, request.backward)
        pages: dict[int, Page[Message]] = {}
        readings: dict[int, Reading | None] = {}
        for chat_id in chat_ids:
            kept = cache.get(chat_id, which) if cache is not None else None
            if kept is not None:
                pages[chat_id] = kept
            else:
                readings[chat_id] = cache.reading(chat_id) if cache is not None else None
        if readings:
            found = await self.store.list_messages(
                list(readings), request.key, request.size + 1, request.backward
            )
            for chat_id, rows in found.items():
                page = pages[chat_id] = _page("message", rows, request, _number)
                if cache is not None:
                    cache.keep(readings[chat_id], which, page)
        return pages

    async def reindex(self, progress: Callable[[int], None]) -> int:
        """Make the search index again from the store, while writes and searches go on;
        `progress` hears each number of messages done. Returns how many there are."""
        return await self.search_index.rebuild(self.store, progress)

    def search_terms(self, query: object) -> tuple[str, ...]:
        return tuple(search_terms(query, self.settings.max_body_length))

    async def search(self, chat_id: int, query: object, request: PageRequest) -> Page[Message]:
        pages = await self.search_pages([chat_id], self.search_terms(query), request)
        return pages[chat_id]

    async def search_pages(
        self, chat_ids: Sequence[int], terms: Sequence[str], request: PageRequest
    ) -> dict[int, Page[Message]]:
        """The same search in each chat, one round trip for all (`terms` from `search_terms`)."""
        found = await self.search_index.search(
            chat_ids, terms, request.key, request.size + 1, request.backward
        )
        unknown = [
            (chat_id, m.number)
            for chat_id, rows in found.items()
            for m in rows
            if m.created_at is UNKNOWN_TIME or m.updated_at is UNKNOWN_TIME
        ]
        if unknown:  # indexed before messages carried times: the store has them
            stored = await self.store.messages_by_number(unknown)
            found = {
                chat_id: [
                    replace(
                        m,
                        created_at=s.created_at,
                        updated_at=s.updated_at,
                        created_text=s.created_text,
                        updated_text=s.updated_text,
                    )
                    if (s := stored.get((chat_id, m.number))) is not None
                    else m
                    for m in rows
                ]
                for chat_id, rows in found.items()
            }
        return {chat_id: _page("search", rows, request, _number) for chat_id, rows in found.items()}

    # -- Relay object identification -----------------------------------------------------------

    async def nodes(self, ids: Sequence[object]) -> list[Node | None]:
        """The objects these Relay ids name, in order, each with its application; None for an
        id that is not one, was not signed with its application's token, or names nothing
        stored."""
        parsed = [parse_global_id(value) for value in ids]
        wanted = {p.application_id for p in parsed if p is not None}
        found_apps: dict[int, Application] = {}
        for app_id in wanted:
            listed = await self.store.list_applications(app_id - 1, 1)
            if listed and listed[0].id == app_id:
                found_apps[app_id] = listed[0]
        valid = [
            p
            if p is not None
            and p.application_id in found_apps
            and p.signed_by(found_apps[p.application_id].token)
            else None
            for p in parsed
        ]
        chat_keys = [
            (p.application_id, p.numbers[0]) for p in valid if p and p.kind != "Application"
        ]
        chats = await self.store.chats_by_number(chat_keys) if chat_keys else {}
        message_keys = [
            (chats[(p.application_id, p.numbers[0])].id, p.numbers[1])
            for p in valid
            if p and p.kind == "Message" and (p.application_id, p.numbers[0]) in chats
        ]
        found_messages = await self.store.messages_by_number(message_keys) if message_keys else {}
        answers: list[Node | None] = []
        for p in valid:
            if p is None:
                answers.append(None)
                continue
            app = found_apps[p.application_id]
            chat = chats.get((p.application_id, p.numbers[0])) if p.numbers else None
            message = (
                found_messages.get((chat.id, p.numbers[1]))
                if chat and p.kind == "Message"
                else None
            )
            if p.kind == "Application":
                answers.append((app, app))
            elif p.kind == "Chat" and chat is not None:
                answers.append((app, chat))
            elif p.kind == "Message" and chat is not None and message is not None:
                answers.append((app, (chat, message)))
            else:
                answers.append(None)
        return answers

    # -- live ----------------------------------------------------------------------------------

    async def message_events(
        self, token: str, chat_number: object, after: object, overflow: Callable[[], None]
    ) -> AsyncGenerator[LiveEvent[IndexedMessage], None]:
        """A chat's messages as they are stored; with `after`, first the stored ones above it.
        Raises `NotFound` at once for an unknown application or chat."""
        if after is not None and (
            isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= 2**53
        ):
            raise InvalidInput("afterNumber must be a number of 0 or more", "afterNumber")
        chat = await self._stored_chat(token, chat_number)
        return self.hub.message_events(chat, after, overflow)

    async def chat_events(
        self, token: str, overflow: Callable[[], None]
    ) -> AsyncGenerator[LiveEvent[StoredChat], None]:
        """An application's chats as they are stored. Raises `NotFound` for an unknown token."""
        return self.hub.chat_events(await self.application_id(token), overflow)

    async def _stored_chat(self, token: str, chat_number: object) -> Chat:
        """The chat, once the store holds it (see `_stored`)."""
        return await self._stored(lambda: self.require_chat(token, chat_number))

    async def _stored(self, read: Callable[[], Awaitable[T]]) -> T:
        """What `read` finds once the store holds it. In the distributed mode a write is
        acknowledged once queued, so what was just written is waited for a little; only so
        many reads wait at once (unknown objects asked for in bulk cost a few reads each, not
        more)."""
        try:
            return await read()
        except NotFound:
            if not self.settings.distributed or self._waits >= _WAITERS:
                raise
        self._waits += 1
        try:
            await asyncio.sleep(_FIRST_WAIT)
            async for attempt in retry.retrying(
                NotFound, 2 * _FIRST_WAIT, 1.0, within=_STORED_WAIT - _FIRST_WAIT
            ):
                with attempt:
                    return await read()
            raise AssertionError("unreachable: tenacity returns or raises")
        finally:
            self._waits -= 1
