"""The use cases, one module per concern; GraphQL resolvers and REST handlers call these and
nothing below them. `ChatService` is what an interface holds: the use cases of one process.

- `directory`: a token to its application, a chat number to its chat (remembered, bounded:
  `caches`)
- `applications`, `chats`, `messages`: making, changing and finding each
- `acceptance`: a write acknowledged once durable with its numbering epoch still open; what
  was acknowledged, waited for until stored
- `reads`: pages of messages, searches, reindexing
- `subscriptions`: messages and chats as they are stored
- `users`: user tokens (minted, verified, revoked) and the applications' signing secrets
- `members`: chat membership, and what a user may reach by it
- `throttle`: rate limits per client address, application and user
- `admin`: what only an operator may do
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from limits.aio.storage import MemoryStorage

from graphql_chat.config import Settings
from graphql_chat.live import Hub
from graphql_chat.numbering.ports import Reopening
from graphql_chat.paging import MessagePages, StoredPages
from graphql_chat.ports import (
    Numbers,
    Pipeline,
    RateCounters,
    ReadingRecords,
    Search,
    Store,
    UserRecords,
)
from graphql_chat.usecases.acceptance import Acceptance
from graphql_chat.usecases.admin import Admin
from graphql_chat.usecases.applications import Applications
from graphql_chat.usecases.chats import Chats
from graphql_chat.usecases.directory import Directory
from graphql_chat.usecases.members import Members
from graphql_chat.usecases.messages import Messages
from graphql_chat.usecases.reading import Reading
from graphql_chat.usecases.reads import Reads
from graphql_chat.usecases.subscriptions import Subscriptions
from graphql_chat.usecases.throttle import Throttle
from graphql_chat.usecases.users import Users


@dataclass
class ChatService:
    settings: Settings
    directory: Directory
    applications: Applications
    chats: Chats
    messages: Messages
    acceptance: Acceptance
    reads: Reads
    subscriptions: Subscriptions
    users: Users
    members: Members
    reading: Reading
    throttle: Throttle
    admin: Admin


def chat_service(
    settings: Settings,
    store: Store,
    numbers: Numbers,
    pipeline: Pipeline,
    search: Search,
    hub: Hub,
    users: UserRecords,
    reading: ReadingRecords,
    pages: MessagePages | None = None,
    reopening: Reopening | None = None,
    rate_counters: Callable[[], RateCounters] | None = None,
) -> ChatService:
    """`pages`: the page reads of messages (None: the store's; the embedded mode's page cache
    is `pages.CachedPages` over them); `reopening`: where a write overtaken by a numbering
    reset learns when numbering is open again (None: numbering is never reset, as in the
    embedded mode); `rate_counters`: makes where rate limits are counted (memory by default;
    Redis in the distributed mode)."""
    directory = Directory(store, numbers)
    acceptance = Acceptance(store, numbers, pipeline, reopening, settings.distributed)
    members = Members(settings, users, store, directory, acceptance)
    people = Users(settings, users, directory)
    return ChatService(
        settings,
        directory,
        Applications(settings, store, numbers, directory, people),
        Chats(settings, store, numbers, directory, acceptance, members),
        Messages(settings, store, numbers, directory, acceptance, members),
        acceptance,
        Reads(settings, store, search, pages or StoredPages(store)),
        Subscriptions(hub, directory, acceptance, members),
        people,
        members,
        Reading(reading, store, members, acceptance),
        Throttle(settings, rate_counters or _memory_counters),
        Admin(settings),
    )


def _memory_counters() -> RateCounters:
    async def nothing() -> None:
        return None

    return MemoryStorage(), nothing
