"""The embedded mode's page cache on the real embedded store: pages answered from memory are
the pages the store holds, whatever a write does meanwhile (a commit kept in flight, a read a
commit overtakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from graphql_chat.bootstrap import Container, bootstrap, running
from graphql_chat.config import Settings
from graphql_chat.domain import ChatRef, Event
from graphql_chat.paging import Page, PageRequest
from graphql_chat.usecases import ChatService
from graphql_chat.web.paging import Paging, page_request

NAMES = Paging(size="size", cursor="cursor")


@pytest.fixture
async def container(settings: Settings) -> AsyncIterator[Container]:
    async with running(settings) as started:
        assert started.page_cache is not None  # on by default in the embedded mode
        yield started


async def _newest(service: ChatService, chat: ChatRef, size: int = 5) -> Page[Any]:
    request = page_request(service.settings, "message", NAMES, last=size)
    return (await service.reads.message_pages([chat], request))[chat.id]


def _stored(container: Container, chat: ChatRef, request: PageRequest) -> Any:
    """What the store itself holds for the page."""
    return container.store.list_messages([chat.id], request.key, request.size + 1, True)


async def _chat(service: ChatService) -> tuple[str, ChatRef]:
    app = await service.applications.create("cached")
    await service.chats.create(app.token)
    for n in range(3):
        await service.messages.create(app.token, 1, f"m{n}")
    return app.token, await service.directory.chat_ref(app.token, 1)


async def test_pages_come_from_memory_until_a_write_and_always_say_what_the_store_holds(
    container: Container,
) -> None:
    service = container.service
    token, chat = await _chat(service)
    reads = _count_reads(container)
    hits = (
        REGISTRY.get_sample_value("graphql_chat_page_cache_lookups_total", {"result": "hit"}) or 0
    )
    first = await _newest(service, chat)
    assert await _newest(service, chat) is first and len(reads) == 1  # from memory
    assert REGISTRY.get_sample_value(
        "graphql_chat_page_cache_lookups_total", {"result": "hit"}
    ) == (hits + 1)
    assert [m.body for m in first.items] == ["m0", "m1", "m2"]

    await service.messages.create(token, 1, "m3")
    after_create = await _newest(service, chat)
    assert [m.body for m in after_create.items] == ["m0", "m1", "m2", "m3"]
    await service.messages.update(token, 1, 2, "edited")
    after_update = await _newest(service, chat)
    assert [m.body for m in after_update.items] == ["m0", "edited", "m2", "m3"]
    assert after_update.items[1].updated_at > after_update.items[1].created_at
    assert len(reads) == 3

    # Another chat's writes leave this chat's page in memory.
    await service.chats.create(token)
    await service.messages.create(token, 2, "elsewhere")
    assert await _newest(service, chat) is after_update and len(reads) == 3


async def test_a_page_read_while_a_commit_of_its_chat_is_in_flight_is_not_kept(
    container: Container,
) -> None:
    service, store = container.service, container.writer.store  # the batches it commits to
    token, chat = await _chat(service)
    await _newest(service, chat)
    gate, entered = asyncio.Event(), asyncio.Event()
    apply = store.apply

    async def held(events: Sequence[Event]) -> Any:
        entered.set()
        await gate.wait()
        return await apply(events)

    store.apply = held  # type: ignore[method-assign]
    created = asyncio.ensure_future(service.messages.create(token, 1, "in flight"))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        during = await _newest(service, chat)  # the commit is not done: the old page
        assert [m.body for m in during.items] == ["m0", "m1", "m2"]
        assert await _newest(service, chat) is not during  # read again, not kept
    finally:
        gate.set()
    number = (await created).number
    after = await _newest(service, chat)
    assert after.items[-1].number == number and after.items[-1].body == "in flight"


async def test_a_page_whose_read_a_commit_overtakes_is_not_kept(container: Container) -> None:
    """The unfavourable interleaving: the read leaves with the page as it was, a create of the
    chat commits meanwhile, the read comes back. Its page answers that read (it was true when
    the read began) but is not kept: the next read holds the new message."""
    service, store = container.service, container.store
    token, chat = await _chat(service)
    list_messages = store.list_messages
    gate, entered = asyncio.Event(), asyncio.Event()

    async def slow(*args: Any, **kwargs: Any) -> Any:
        rows = await list_messages(*args, **kwargs)
        entered.set()
        await gate.wait()
        return rows

    store.list_messages = slow  # type: ignore[method-assign]
    reading = asyncio.ensure_future(_newest(service, chat))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        store.list_messages = list_messages  # type: ignore[method-assign]
        number = (await service.messages.create(token, 1, "overtook")).number
    finally:
        gate.set()
    assert [m.body for m in (await reading).items] == ["m0", "m1", "m2"]
    after = await _newest(service, chat)
    assert after.items[-1].number == number and after.items[-1].body == "overtook"


async def test_concurrent_writers_and_readers_never_see_a_page_older_than_their_writes(
    container: Container,
) -> None:
    """Each writer, once its create or update is acknowledged, reads the newest page (kept or
    not) and finds what it wrote; at the end every page kept is what the store holds."""
    service = container.service
    token, chat = await _chat(service)

    async def writer(w: int) -> None:
        for i in range(15):
            created = await service.messages.create(token, 1, f"w{w} {i}")
            page = await _newest(service, chat, 20)
            numbers = [m.number for m in page.items]
            assert created.number in numbers or created.number < numbers[0]
            if i % 3 == 0:
                await service.messages.update(token, 1, created.number, f"w{w} {i} edited")
                mine = {m.number: m.body for m in (await _newest(service, chat, 40)).items}
                assert created.number not in mine or mine[created.number].endswith("edited")

    async def reader() -> None:
        for _ in range(60):
            await _newest(service, chat, 20)
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(w) for w in range(6)), *(reader() for _ in range(3)))
    for size in (5, 20, 40):
        request = page_request(service.settings, "message", NAMES, last=size)
        kept = await _newest(service, chat, size)
        stored = list(reversed((await _stored(container, chat, request))[chat.id][:size]))
        assert [(m.number, m.body, m.updated_at) for m in kept.items] == [
            (m.number, m.body, m.updated_at) for m in stored
        ]


async def test_no_page_cache_when_set_to_zero(settings: Settings) -> None:
    async with running(settings.model_copy(update={"page_cache_bytes": 0})) as container:
        assert container.page_cache is None and not container.writer.observers
        _token, chat = await _chat(container.service)
        reads = _count_reads(container)
        await _newest(container.service, chat)
        await _newest(container.service, chat)
        assert len(reads) == 2


def _count_reads(container: Container) -> list[object]:
    """The store's page reads from now on, one entry each."""
    reads: list[object] = []
    list_messages = container.store.list_messages

    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(args)
        return await list_messages(*args, **kwargs)

    container.store.list_messages = counted  # type: ignore[method-assign]
    return reads


async def test_an_inbox_of_several_chats_takes_the_pages_kept_and_reads_only_the_others(
    container: Container,
) -> None:
    service = container.service
    token, first = await _chat(service)
    await service.chats.create(token)
    await service.messages.create(token, 2, "second chat")
    second = await service.directory.chat_ref(token, 2)
    request = page_request(service.settings, "message", NAMES, last=5)
    kept = (await service.reads.message_pages([first], request))[first.id]
    reads = _count_reads(container)
    both = await service.reads.message_pages([first, second, first], request)
    assert both[first.id] is kept
    assert [m.body for m in both[second.id].items] == ["second chat"]
    assert reads == [([second.id], None, 6, True)]
    again = await service.reads.message_pages([second, first], request)
    assert again[second.id] is both[second.id] and again[first.id] is kept and len(reads) == 1


def test_no_page_cache_where_another_process_may_write(settings: Settings) -> None:
    """With numbers from Redis another process may share the database (the premise of an
    exact cache gone); the distributed mode's workers are other processes."""
    hybrid = bootstrap(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    assert hybrid.page_cache is None and not hybrid.writer.observers
