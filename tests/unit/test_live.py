"""The hub's ordering rules, with the feed's worst interleavings played by hand.

The store here is a dict: what is under test is how the hub orders and deduplicates what the
feed tells, against what a read of the store returns (the real store and feeds are tested
through real servers in tests/system/test_live.py)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

import pytest

from graphql_chat.domain import Chat, Message
from graphql_chat.errors import SlowConsumer
from graphql_chat.live import EventKind, Hub
from graphql_chat.ports import Changes, IndexedMessage

AT = datetime(2026, 11, 30, tzinfo=UTC)
CHAT = Chat(id=7, application_id=1, number=1, messages_count=0, created_at=AT)
GAP = 0.05


class _Store:
    """Just the reads the hub makes, over a dict of chat 7's messages."""

    def __init__(self, numbers: range = range(0)) -> None:
        self.bodies: dict[int, str] = {n: f"m{n}" for n in numbers}
        self.reads = 0

    async def max_message_number(self, application_id: int, chat_number: int) -> int:
        return max(self.bodies, default=0)

    async def list_messages(
        self, chat_ids: list[int], after: int | None, limit: int
    ) -> dict[int, list[Message]]:
        self.reads += 1
        await asyncio.sleep(0)  # a real read yields to the loop
        numbers = sorted(n for n in self.bodies if n > (after or 0))[:limit]
        return {chat_ids[0]: [Message(n, self.bodies[n], AT, AT) for n in numbers]}


def _message(number: int, revision: int = 1, body: str | None = None) -> IndexedMessage:
    return IndexedMessage(CHAT.id, number, body or f"m{number}", revision, AT, AT)


class _Client:
    """One subscriber, collecting what it is sent."""

    def __init__(self, hub: Hub, after: int | None = None) -> None:
        self.got: list[tuple[EventKind, int, str]] = []
        self.overflowed = False
        self._events = hub.message_events(CHAT, after, self._overflow)
        self.error: BaseException | None = None
        self.task = asyncio.ensure_future(self._run())

    def _overflow(self) -> None:
        self.overflowed = True

    async def _run(self) -> None:
        try:
            async for event in self._events:
                self.got.append((event.kind, event.item.number, event.item.body))
        except SlowConsumer as error:
            self.error = error

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    def numbers(self, kind: EventKind = EventKind.CREATED) -> list[int]:
        return [n for k, n, _ in self.got if k is kind]


async def _settle(seconds: float = 0.01) -> None:
    await asyncio.sleep(seconds)


def _hub(store: _Store, queue: int = 1000) -> Hub:
    return Hub(store, gap_wait=GAP, queue_size=queue)  # type: ignore[arg-type]


def _tell(hub: Hub, **changes: Any) -> None:
    hub.changes(Changes(**changes))


async def test_commits_arriving_out_of_order_are_sent_in_number_order() -> None:
    store = _Store(range(1, 2))
    hub = _hub(store)
    client = _Client(hub)
    await _settle()
    for number in (4, 2, 3):
        store.bodies[number] = f"m{number}"
    _tell(hub, created=[_message(4)])
    _tell(hub, created=[_message(3), _message(2)])
    await _settle()
    assert client.numbers() == [2, 3, 4]
    await client.close()


async def test_a_lost_publication_is_read_from_the_store_once_the_gap_stays_open() -> None:
    store = _Store(range(1, 2))
    hub = _hub(store)
    client = _Client(hub)
    await _settle()
    store.bodies[2] = "m2"  # committed, but its telling was lost with its worker
    store.bodies[3] = "m3"
    _tell(hub, created=[_message(3)])
    await _settle()
    assert client.numbers() == []  # 3 waits for 2
    await _settle(GAP * 4)
    assert client.numbers() == [2, 3]
    await client.close()


async def test_a_number_that_never_comes_is_skipped_and_sent_late_if_it_does() -> None:
    store = _Store(range(1, 2))
    hub = _hub(store)
    client = _Client(hub)
    await _settle()
    store.bodies[3] = "m3"
    _tell(hub, created=[_message(3)])  # 2 was drawn by a request that failed, or is late
    await _settle(GAP * 4)
    assert client.numbers() == [3]
    store.bodies[2] = "m2"
    _tell(hub, created=[_message(2)])
    _tell(hub, created=[_message(2)], replayed=[_message(3)])  # told twice: sent once
    await _settle()
    assert client.numbers() == [3, 2]
    await client.close()


async def test_duplicates_and_older_revisions_are_dropped() -> None:
    store = _Store(range(1, 2))
    hub = _hub(store)
    client = _Client(hub)
    await _settle()
    _tell(hub, created=[_message(2)])
    _tell(hub, replayed=[_message(2)], created=[_message(2)])  # a redelivered batch
    _tell(hub, updated=[_message(2, 5, "five")])
    _tell(hub, updated=[_message(2, 3, "three")])  # committed before 5, told after it
    _tell(hub, replayed=[_message(2, 5, "five")])
    await _settle()
    assert client.got == [(EventKind.CREATED, 2, "m2"), (EventKind.UPDATED, 2, "five")]
    await client.close()


async def test_an_update_told_before_its_create_makes_the_create_carry_the_new_body() -> None:
    store = _Store(range(1, 2))
    hub = _hub(store)
    client = _Client(hub)
    await _settle()
    _tell(hub, updated=[_message(2, 9, "edited")])
    _tell(hub, created=[_message(2, 1, "first")])
    await _settle()
    assert client.got == [(EventKind.CREATED, 2, "edited")]
    await client.close()


async def test_replay_then_live_has_no_hole_and_no_duplicate_with_writes_during_the_replay() -> (
    None
):
    store = _Store(range(1, 251))  # three pages of replay
    hub = _hub(store)
    watcher = _Client(hub)  # the sequence exists already, and moves on while we replay
    await _settle()
    client = _Client(hub, after=10)
    for number in range(251, 301):  # each commit is told while the replay is reading
        store.bodies[number] = f"m{number}"
        _tell(hub, created=[_message(number)])
        await asyncio.sleep(0)
    await _settle(GAP * 2)
    assert client.numbers() == list(range(11, 301))
    assert watcher.numbers() == list(range(251, 301))
    await client.close()
    await watcher.close()


async def test_after_beyond_what_is_stored_sends_only_what_comes_after_it() -> None:
    store = _Store(range(1, 6))
    hub = _hub(store)
    client = _Client(hub, after=7)
    await _settle()
    for number in (6, 7, 8):
        store.bodies[number] = f"m{number}"
        _tell(hub, created=[_message(number)])
    await _settle()
    assert client.numbers() == [8]
    await client.close()


async def test_a_subscriber_that_does_not_keep_up_is_told_and_the_others_are_not() -> None:
    store = _Store(range(1, 2))
    hub = _hub(store, queue=3)
    fast = _Client(hub)
    stalled: list[bool] = []  # a subscriber that reads one event, then nothing
    events = hub.message_events(CHAT, None, lambda: stalled.append(True))
    first = asyncio.ensure_future(events.__anext__())
    await _settle()
    for number in range(2, 8):
        store.bodies[number] = f"m{number}"
        _tell(hub, created=[_message(number)])
        await _settle()  # the fast one reads each as it comes
    assert stalled == [True]
    assert fast.numbers() == list(range(2, 8))
    assert (await first).item.number == 2  # what it had before it fell behind
    with pytest.raises(SlowConsumer):
        await events.__anext__()
    await events.aclose()
    await fast.close()


async def test_after_a_feed_outage_subscribers_catch_up_from_the_store() -> None:
    store = _Store(range(1, 3))
    hub = _hub(store)
    client = _Client(hub)
    await _settle()
    for number in (3, 4, 5):  # committed while the feed was down: never told
        store.bodies[number] = f"m{number}"
    hub.lost()
    await _settle()
    assert client.numbers() == [3, 4, 5]
    _tell(hub, created=[_message(5)], replayed=[_message(4)])
    store.bodies[6] = "m6"
    _tell(hub, created=[_message(6)])
    await _settle()
    assert client.numbers() == [3, 4, 5, 6]
    await client.close()


async def test_a_sequence_lives_while_it_has_subscribers() -> None:
    store = _Store(range(1, 2))
    hub = _hub(store)
    first, second = _Client(hub), _Client(hub)
    await _settle()
    assert hub.subscribers == 2
    await first.close()
    assert hub.subscribers == 1
    await second.close()
    assert hub.subscribers == 0 and not hub.messages.by_key


async def test_commits_told_while_the_first_subscriber_starts_its_sequence_come_once() -> None:
    store = _Store(range(1, 101))
    hub = _hub(store)
    client = _Client(hub, after=10)  # the chat's first subscriber: its sequence starts now
    for number in range(101, 131):  # each told while the sequence reads where the store stands
        store.bodies[number] = f"m{number}"
        _tell(hub, created=[_message(number)])
        await asyncio.sleep(0)
    await _settle(GAP * 2)
    assert client.numbers() == list(range(11, 131))
    await client.close()


async def test_each_gap_is_held_open_for_the_whole_wait_from_when_it_opened() -> None:
    """A gap that opens just before the wait for an earlier one runs out is not skipped then:
    under a steady stream, gaps open and close all the time."""
    wait = 1.0
    store = _Store(range(1, 2))
    hub = Hub(store, gap_wait=wait)  # type: ignore[arg-type]
    client = _Client(hub)
    await _settle()
    store.bodies[3] = "m3"
    _tell(hub, created=[_message(3)])  # 2 is late: the wait starts
    await asyncio.sleep(0.7)
    for number in (2, 5):
        store.bodies[number] = f"m{number}"
    _tell(hub, created=[_message(2), _message(5)])  # 2 closes its gap; 5 opens one at 4
    await asyncio.sleep(0.5)  # past the first gap's wait, well inside the second's
    store.bodies[4] = "m4"
    _tell(hub, created=[_message(4)])
    await _settle()
    assert client.numbers() == [2, 3, 4, 5]
    await client.close()
