"""The service through `bootstrap()` on the embedded adapters: the use cases as the
interfaces call them, without HTTP or GraphQL in between."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import pytest

from graphql_chat.bootstrap import running
from graphql_chat.config import Settings
from graphql_chat.domain import UNKNOWN_TIME, Message
from graphql_chat.errors import InvalidInput, NotFound
from graphql_chat.health import HEALTH_SPACING
from graphql_chat.paging import PageRequest
from graphql_chat.ports import Search
from graphql_chat.usecases import ChatService
from graphql_chat.web.paging import Paging, page_request

NAMES = Paging(size="size", cursor="cursor")


@pytest.fixture
async def service(settings: Settings) -> AsyncIterator[ChatService]:
    async with running(settings) as container:
        yield container.service


async def test_an_application_its_chats_and_messages(service: ChatService) -> None:
    app = await service.applications.create("inbox")
    assert (await service.directory.require_application(app.token)).name == "inbox"
    chats = await asyncio.gather(*[service.chats.create(app.token) for _ in range(3)])
    assert sorted(c.number for c in chats) == [1, 2, 3]
    created = await asyncio.gather(
        *[service.messages.create(app.token, 2, f"hello {n}") for n in range(5)]
    )
    assert sorted(m.number for m in created) == [1, 2, 3, 4, 5]
    updated = await service.messages.update(app.token, 2, 3, "edited")
    assert (await service.messages.require(app.token, 2, 3)).body == updated.body == "edited"
    chat = await service.directory.require_chat(app.token, 2)
    assert chat.messages_count == 5
    assert (await service.directory.require_application(app.token)).chats_count == 3


async def test_pages_follow_their_cursors(service: ChatService) -> None:
    app = await service.applications.create("a")
    await service.chats.create(app.token)
    for n in range(7):
        await service.messages.create(app.token, 1, f"m{n}")
    chat = await service.directory.chat_ref(app.token, 1)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        request = page_request(service.settings, "message", NAMES, 3, cursor)
        page = (await service.reads.message_pages([chat], request))[chat.id]
        seen += [m.number for m in page.items]
        if not page.has_next:
            break
        cursor = page.end_cursor
    assert seen == list(range(1, 8))
    # And back from the newest, each page ascending, until the first.
    seen = []
    cursor = None
    while True:
        request = page_request(service.settings, "message", NAMES, last=3, before=cursor)
        page = (await service.reads.message_pages([chat], request))[chat.id]
        seen = [m.number for m in page.items] + seen
        assert [m.number for m in page.items] == sorted(m.number for m in page.items)
        assert page.has_next == (cursor is not None)
        if not page.has_previous:
            break
        cursor = page.start_cursor
    assert seen == list(range(1, 8))


async def test_errors_name_the_interface_s_own_parameters(service: ChatService) -> None:
    with pytest.raises(InvalidInput) as too_big:
        page_request(service.settings, "message", Paging(size="limit", cursor="cursor"), 10_000)
    assert too_big.value.field == "limit" and "limit must be between" in too_big.value.message
    with pytest.raises(InvalidInput) as bad_cursor:
        page_request(
            service.settings, "message", Paging(size="first", cursor="after"), None, "nope"
        )
    assert bad_cursor.value.field == "after"
    with pytest.raises(InvalidInput) as mixed:
        page_request(service.settings, "message", Paging(size="first", cursor="after"), 3, last=3)
    assert mixed.value.field == "last" and "not both" in mixed.value.message
    with pytest.raises(InvalidInput) as too_many:
        page_request(service.settings, "message", Paging(size="first", cursor="after"), last=10_000)
    assert too_many.value.field == "last"


async def test_search_and_reindex(service: ChatService) -> None:
    app = await service.applications.create("a")
    await service.chats.create(app.token)
    for body in ("a café", "CAFÉ CRÈME", "tea"):
        await service.messages.create(app.token, 1, body)
    chat_id = await service.directory.chat_id(app.token, 1)
    request = page_request(service.settings, "search", NAMES)
    assert [m.number for m in (await service.reads.search(chat_id, "café", request)).items] == [
        2,
        1,
    ]
    done: list[int] = []
    assert await service.reads.reindex(done.append) == 3 == sum(done)
    assert [m.number for m in (await service.reads.search(chat_id, "crè", request)).items] == [2]


async def test_unknown_things_are_not_found(service: ChatService) -> None:
    with pytest.raises(NotFound):
        await service.chats.create("00000000-0000-4000-8000-000000000000")
    app = await service.applications.create("a")
    with pytest.raises(NotFound):
        await service.messages.create(app.token, 9, "no such chat")
    with pytest.raises(InvalidInput):
        await service.messages.create(app.token, 1, "")


class _IndexedBeforeTimes:
    """A search index whose documents predate times: it knows numbers and bodies only."""

    def __init__(self, search: Search) -> None:
        self.search_index = search

    async def search(
        self,
        chat_ids: Sequence[int],
        terms: Sequence[str],
        before: int | None,
        limit: int,
        backward: bool = False,
    ) -> dict[int, list[Message]]:
        found = await self.search_index.search(chat_ids, terms, before, limit, backward)
        return {
            chat_id: [replace(m, created_at=UNKNOWN_TIME, updated_at=UNKNOWN_TIME) for m in rows]
            for chat_id, rows in found.items()
        }


async def test_search_hits_indexed_before_times_get_them_from_the_store(
    service: ChatService,
) -> None:
    app = await service.applications.create("a")
    await service.chats.create(app.token)
    sent = [await service.messages.create(app.token, 1, f"hello {n}") for n in range(3)]
    edited = await service.messages.update(app.token, 1, 2, "hello edited")
    service.reads.search_index = _IndexedBeforeTimes(service.reads.search_index)  # type: ignore[assignment]
    chat_id = await service.directory.chat_id(app.token, 1)
    page = await service.reads.search(chat_id, "hello", PageRequest(10, None))
    assert [(m.number, m.created_at, m.updated_at) for m in page.items] == [
        (3, sent[2].created_at, sent[2].updated_at),
        (2, sent[1].created_at, edited.updated_at),
        (1, sent[0].created_at, sent[0].updated_at),
    ]


async def test_health_checks_are_shared_and_never_older_than_the_question(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/health` is public: a flood of callers must not make every dependency be checked once
    per caller. Callers share rounds, one at a time, spaced; yet a caller never gets a round
    that began before it asked (readiness right after a dependency comes back says so)."""
    async with running(settings) as container:
        began: list[float] = []
        loop = asyncio.get_running_loop()
        store_ping = container.store.ping

        async def slow_ping() -> None:
            began.append(loop.time())
            await asyncio.sleep(0.05)
            await store_ping()

        monkeypatch.setattr(container.store, "ping", slow_ping)
        reports = await asyncio.gather(*(container.health() for _ in range(200)))
        assert all(r["store"] == "ok" for r in reports)
        assert len(began) == 1  # 200 callers, one round

        first = asyncio.ensure_future(container.health())
        await asyncio.sleep(0.12)  # the second round runs
        asked = loop.time()
        late = await asyncio.gather(*(container.health() for _ in range(50)))
        await first
        assert len(began) == 3  # the late callers shared one round, after the second
        assert began[2] >= asked
        assert all(r["store"] == "ok" for r in late)
        # Rounds are spaced: at most 1 / HEALTH_SPACING a second, whatever the callers do.
        assert all(b - a >= HEALTH_SPACING - 0.005 for a, b in itertools.pairwise(began))

        # A caller that goes away does not cancel the round others wait for.
        gone = asyncio.ensure_future(container.health())
        staying = asyncio.ensure_future(container.health())
        await asyncio.sleep(0.01)
        gone.cancel()
        assert (await staying)["store"] == "ok"
