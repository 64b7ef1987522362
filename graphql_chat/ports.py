"""The ports. The service drives five (Store, Numbers, Pipeline, Search, Feed), each with an
embedded and a distributed adapter in `adapters/`; the pipelines drive the write side
(`WriteSide`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeAlias

from limits.aio.storage import Storage

from graphql_chat.domain import Application, Chat, Claim, Event, Message
from graphql_chat.errors import ChatError, Conflict


@dataclass(frozen=True, slots=True)
class IndexedMessage:
    """A message as the search index holds it, after the store committed it."""

    chat_id: int
    number: int
    body: str
    revision: int
    created_at: datetime
    updated_at: datetime
    author: str | None = None


@dataclass(frozen=True, slots=True)
class StoredChat:
    """A chat as a batch inserted it."""

    application_id: int
    number: int
    chat_id: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Applied:
    """What a batch did: the messages as they now stand (for search, replays included), and
    the events the store refused, each with the reason (a draw of a retired numbering epoch,
    or a create whose number already holds a message from another draw). `created`,
    `updated` and `chats` are what this transaction itself changed, in chat and number order:
    a replay changes nothing and reports nothing there."""

    indexed: list[IndexedMessage]
    set_aside: list[tuple[Event, str]]
    created: list[IndexedMessage] = field(default_factory=list)
    updated: list[IndexedMessage] = field(default_factory=list)
    chats: list[StoredChat] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Committed:
    """What committing a batch did: the messages as stored (for search), the events the store
    set aside (see `Applied`), the events that failed even alone, each with the error its
    client gets (or the reason it is dead-lettered), and what this commit itself created and
    updated (for subscribers: nothing for a replay)."""

    stored: list[IndexedMessage]
    set_aside: list[tuple[Event, str]]
    failed: list[tuple[Event, ChatError]]
    created: list[IndexedMessage] = field(default_factory=list)  # as in `Applied`
    updated: list[IndexedMessage] = field(default_factory=list)
    chats: list[StoredChat] = field(default_factory=list)

    def outcomes(self, events: Sequence[Event]) -> list[ChatError | None]:
        """Per event of the batch, in order: None when it is stored, else its error."""
        errors: dict[int, ChatError] = {id(e): error for e, error in self.failed}
        for event, reason in self.set_aside:
            errors[id(event)] = Conflict(f"the write was refused: {reason}")
        return [errors.get(id(event)) for event in events]


Park = Callable[[Sequence[IndexedMessage]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Changes:
    """What one commit changed, told to subscribers once it is durable: the messages it
    created and updated, the chats it inserted, and the messages of a batch committed before
    (`replayed`: its first telling may have been lost with the process that committed it)."""

    created: Sequence[IndexedMessage] = ()
    updated: Sequence[IndexedMessage] = ()
    replayed: Sequence[IndexedMessage] = ()
    chats: Sequence[StoredChat] = ()

    def __bool__(self) -> bool:
        return bool(self.created or self.updated or self.replayed or self.chats)


class Listener(Protocol):
    """What a feed tells, in the order it was published (`graphql_chat.live.Hub`)."""

    def changes(self, changes: Changes) -> None: ...

    def lost(self) -> None:
        """The feed may have dropped changes (its connection broke and is back): whatever
        was committed meanwhile is in the store."""


class Feed(Protocol):
    """Carries committed changes from the processes that commit to every API process."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises `Unavailable` unless changes can be published and received now."""

    async def publish(self, changes: Changes) -> None:
        """Best effort, after the commit: never raises (a listener that misses changes
        catches up from the store)."""

    async def listen(self, listener: Listener) -> None:
        """Tell `listener` every change published from now on (returns once listening)."""


class WriteSide(Protocol):
    """The write side's rules (`graphql_chat.writer.Writer`), as the pipelines drive them."""

    async def commit(
        self, events: Sequence[Event], until: asyncio.Event | None = None
    ) -> Committed: ...
    async def index(self, messages: Sequence[IndexedMessage], park: Park | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class Drawn:
    """A number handed out, with the revision ordering its write, the epoch it belongs to,
    and when it was handed out (microseconds since 1970-01-01 UTC, never less than an
    earlier draw's of the same application: times and numbers agree)."""

    number: int
    revision: int
    epoch: int
    at: int
    # Under an idempotency key already claimed: the draw that claimed it (`replayed`), which
    # the store is known to hold (`durable`) or which is submitted again (a no-op if it is).
    replayed: bool = False
    durable: bool = False


@dataclass(frozen=True, slots=True)
class Claimed:
    """An idempotency key's claim as the store keeps it with its write, until `expires`
    (microseconds since 1970-01-01 UTC): the draw it returns to a retry."""

    application_id: int
    key: str
    fingerprint: str
    chat_number: int  # 0 for a chat's create
    number: int
    revision: int
    epoch: int
    at: int
    expires: int


class ApplicationRecords(Protocol):
    """Applications as the store keeps them."""

    async def insert_application(self, token: str, name: str) -> Application:
        """Raises `TokenClash` when the token is taken."""

    async def rename_application(self, token: str, name: str) -> Application | None: ...
    async def applications_by_token(self, tokens: Sequence[str]) -> dict[str, Application]: ...
    async def applications_by_id(self, ids: Sequence[int]) -> dict[int, Application]: ...
    async def list_applications(
        self, after_id: int | None, limit: int, backward: bool = False
    ) -> list[Application]:
        """Oldest first after `after_id`; `backward`: newest first before it."""


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """What verifies an application's user tokens: its secret, and the one it replaced while
    that still verifies (until `previous_until`, microseconds since 1970)."""

    application_id: int
    token: str
    public_id: str
    secret: str
    previous: str | None
    previous_until: int | None
    users_manage_chats: bool

    def verifying(self, now_us: int) -> list[str]:
        """The secrets a token may be signed with now."""
        if self.previous and self.previous_until and self.previous_until > now_us:
            return [self.secret, self.previous]
        return [self.secret]


@dataclass(frozen=True, slots=True)
class Membership:
    """A user in a chat, since `joined_at` (microseconds since 1970); `id` orders them. Their
    read marker (`last_read_number`, moved at `read_at`), and the chat's latest activity for
    them (`active_at`, microseconds) and highest stored number (`top_number`)."""

    id: int
    chat_number: int
    user_id: str
    joined_at: int
    last_read_number: int = 0
    read_at: int | None = None
    active_at: int = 0
    top_number: int = 0

    @property
    def inbox_key(self) -> int:
        """Where it stands in its user's chats by activity (newest first): one integer."""
        return (self.active_at << 64) | self.id


# Where rate limits are counted (a `limits` storage: memory, or Redis), and what closes it.
RateCounters: TypeAlias = tuple[Storage, Callable[[], Awaitable[None]]]


class UserRecords(Protocol):
    """Users as the store keeps them: applications' signing secrets, chat membership, and
    revoked tokens. The store is the authority: a process remembers none of it for long."""

    async def signing_keys(self, public_id: str) -> SigningKeys | None: ...
    async def signing_keys_of(self, application_id: int) -> SigningKeys | None: ...
    async def rotate_secret(
        self, application_id: int, secret: str, previous_until: int
    ) -> SigningKeys | None: ...
    async def set_users_manage_chats(self, application_id: int, allowed: bool) -> None: ...

    async def revoke(self, application_id: int, user_id: str, issued_before: int) -> int:
        """Refuse the user's tokens issued before `issued_before` (seconds since 1970, or the
        later time already stored): returns the time that holds now."""

    async def issued_before(self, application_id: int, user_id: str) -> int | None: ...

    async def add_members(
        self, application_id: int, chat_number: int, user_ids: Sequence[str], at: int
    ) -> list[str]:
        """Add the users to the chat: returns those who were not members yet."""

    async def remove_members(
        self, application_id: int, chat_number: int, user_ids: Sequence[str]
    ) -> list[str]:
        """Returns those who were members."""

    async def member_of(
        self, application_id: int, user_id: str, chat_numbers: Sequence[int]
    ) -> set[int]:
        """Which of these chats the user is a member of."""

    async def list_members(
        self, application_id: int, chat_number: int, after: int | None, limit: int, backward: bool
    ) -> list[Membership]:
        """A chat's members in the order they joined (`after`: a `Membership.id`)."""

    async def list_memberships(
        self, application_id: int, user_id: str, after: int | None, limit: int, backward: bool
    ) -> list[Membership]:
        """A user's chats in the order they joined them."""


class ReadingRecords(Protocol):
    """What users have read, and their chats by activity, as the store keeps them (written by
    the batch that stores messages and read marks)."""

    async def inbox(
        self, application_id: int, user_id: str, after: int | None, limit: int, backward: bool
    ) -> list[tuple[Membership, Chat | None]]:
        """A user's chats, latest activity first (`after`: a `Membership.inbox_key`), each
        with the chat as stored (None: its create is still on its way to the store)."""

    async def memberships(
        self, application_id: int, user_id: str, chat_numbers: Sequence[int]
    ) -> dict[int, Membership]:
        """The user's membership of each of these chats they are in, by chat number."""

    async def unread_counts(self, user_id: str, markers: Mapping[int, int]) -> dict[int, int]:
        """By chat id (`markers`: a marker by chat id): the stored messages above the marker
        that others than the user wrote."""

    async def unread_totals(self, application_id: int, user_id: str, cap: int) -> tuple[int, int]:
        """How many of the user's chats have unread messages, and how many unread messages
        they hold in all (counted up to `cap`)."""


class ChatRecords(Protocol):
    """Chats and their messages as the store keeps them."""

    async def chats_by_number(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Chat]: ...
    async def list_chats(
        self,
        application_ids: Sequence[int],
        after: int | None,
        limit: int,
        backward: bool = False,
    ) -> dict[int, list[Chat]]:
        """Per application, `limit` chats numbered above `after` in number order; `backward`:
        below it, highest first."""

    async def messages_by_number(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Message]: ...
    async def list_messages(
        self, chat_ids: Sequence[int], after: int | None, limit: int, backward: bool = False
    ) -> dict[int, list[Message]]:
        """As `list_chats`, for the messages of each chat."""

    async def message_revisions(
        self, application_id: int, chat_number: int, number: int
    ) -> tuple[int, int | None] | None:
        """A stored message's revision and the revision of the create that made it."""


class Seeds(Protocol):
    """What numbering reads from the store: the highest numbers stored, the claims kept."""

    async def max_chat_number(self, application_id: int) -> int: ...
    async def max_message_number(self, application_id: int, chat_number: int) -> int: ...

    async def claimed(self, application_id: int, key: str) -> Claimed | None:
        """The claim stored under an idempotency key, unless it has expired."""


class Batches(Protocol):
    """Where the write side applies what it accepted."""

    async def apply(self, events: Sequence[Event]) -> Applied:
        """Apply a batch in one transaction: idempotent, order-insensitive, counts bumped.

        Returns every message the batch names, as stored after it, for the search index:
        replays included, so search catches up on a batch committed but never indexed. Events
        drawn in an epoch older than the store's, and creates that collide with another draw,
        are set aside, not applied.
        """


class Catalogue(Protocol):
    """Every stored message, for rebuilding a search index while writes go on."""

    async def clock(self) -> datetime:
        """The database's time, what a message's last change is stamped with."""

    async def count_messages(self) -> int: ...
    def iter_messages(
        self, batch_size: int, changed_since: datetime | None = None
    ) -> AsyncIterator[list[IndexedMessage]]:
        """Every stored message, `batch_size` at a time; with `changed_since`, only those
        changed since then (MySQL; SQLite has no such stamp and gives every message)."""


class Store(ApplicationRecords, ChatRecords, Seeds, Batches, Catalogue, Protocol):
    """The database: every aggregate's records. Each part of the application depends on
    the aggregate it uses; only the composition root holds the whole."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises `Unavailable` unless the database answers now."""


class Numbers(Protocol):
    """Hands out chat and message numbers, gapless unless a request fails after drawing one.

    Each draw belongs to a numbering epoch; a write is acknowledged only if its epoch is still
    open once the write is durable (`still_open`).
    """

    async def start(self) -> None:
        """Ready to draw: on Redis, opens numbering first if it is new (or recovers it)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises `Unavailable`, saying what is wrong, unless numbers can be drawn now."""

    async def next_chat(self, application_id: int, claim: Claim | None = None) -> Drawn:
        """A new chat number. With a claim: the first draw under its key (within the
        window) claims it, and every later one gets that draw back (`replayed`), or
        `Conflict` when the claim is of another create."""

    async def draw_message(
        self, application_id: int, chat_number: int, claim: Claim | None = None
    ) -> Drawn:
        """A new message number and the revision of its create; `NotFound` when the chat
        number was never handed out. A claim as for `next_chat`."""

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> Drawn:
        """A revision for updating an issued message; `NotFound` when it was never issued."""

    async def still_open(self, application_id: int, epoch: int) -> bool:
        """Whether `epoch` is still the application's open numbering epoch."""

    async def register_application(self, application_id: int, token: str) -> None:
        """A new application: its chat numbers start at 1 without asking the store."""

    async def application_id(self, token: str) -> int | None:
        """The id of the application holding `token`, if this port knows it (a shared cache
        of an immutable fact; the store is the authority)."""

    async def remember_token(self, token: str, application_id: int) -> None: ...


class Pipeline(Protocol):
    """Carries accepted writes to the store. `submit` returns once the write is durable."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises `Unavailable` unless writes can be accepted now."""

    async def submit(self, event: Event) -> None: ...


class Index(Protocol):
    """Where stored messages are made searchable, where the store's own commit does not make
    them so (Elasticsearch; SQLite's triggers index them in the commit)."""

    async def index(self, messages: Sequence[IndexedMessage]) -> None: ...


class Search(Protocol):
    """Partial-text search within one chat: every term a case-insensitive substring."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raises `Unavailable` unless searches can be answered now."""

    async def search(
        self,
        chat_ids: Sequence[int],
        terms: Sequence[str],
        before: int | None,
        limit: int,
        backward: bool = False,
    ) -> dict[int, list[Message]]:
        """Per chat asked for (every one a key), up to `limit` matches newest first, numbered
        below `before` when given: one round trip for all the chats. `backward`: the other
        way, oldest first, numbered above `before` when given (a page before a cursor in the
        newest-first order, or the oldest matches)."""

    async def refresh(self) -> None:
        """Make everything indexed so far searchable now (tests, reindex)."""

    async def rebuild(self, source: Catalogue, progress: Callable[[int], None]) -> int:
        """Make the index again from `source` (a new index swapped in, or the same one made
        again in one transaction), calling `progress` with each number of messages done;
        returns how many. Searches keep answering meanwhile."""
