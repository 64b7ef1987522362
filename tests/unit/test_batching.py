"""Coalescing: concurrent calls share batches, each gets its own result or error."""

from __future__ import annotations

import asyncio

import pytest

from graphql_chat.batching import Coalescer
from graphql_chat.errors import Unavailable

FAIL_ALL = 10**6


class Doubler:
    """Doubles numbers in batches; negative numbers fail alone, FAIL_ALL fails the whole batch."""

    def __init__(self, delay: float = 0.01) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, items: list[int]) -> list[int | BaseException]:
        self.batches.append(items)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if FAIL_ALL in items:
            raise Unavailable("the batch failed")
        return [ValueError(f"negative: {i}") if i < 0 else i * 2 for i in items]


async def test_a_lone_call_is_sent_at_once() -> None:
    run = Doubler(delay=0)
    coalesce = Coalescer(run, "test")
    assert await coalesce(21) == 42
    assert run.batches == [[21]]


async def test_calls_made_while_a_batch_is_in_flight_leave_together() -> None:
    run = Doubler()
    coalesce = Coalescer(run, "test", max_batch=1000, in_flight=1)
    first = asyncio.create_task(coalesce(0))
    await asyncio.sleep(0.002)  # the first batch is in flight
    results = await asyncio.gather(*[coalesce(i) for i in range(1, 101)])
    assert await first == 0
    assert results == [i * 2 for i in range(1, 101)]
    assert run.batches == [[0], list(range(1, 101))]


async def test_lanes_bound_the_batches_in_flight_and_max_batch_their_size() -> None:
    run = Doubler()
    coalesce = Coalescer(run, "test", max_batch=10, in_flight=3)
    results = await asyncio.gather(*[coalesce(i) for i in range(95)])
    assert results == [i * 2 for i in range(95)]
    assert run.most_in_flight == 3
    assert max(len(batch) for batch in run.batches) == 10
    assert sorted(i for batch in run.batches for i in batch) == list(range(95))


async def test_an_error_for_one_item_fails_that_call_alone() -> None:
    coalesce = Coalescer(Doubler(), "test")
    results = await asyncio.gather(coalesce(1), coalesce(-1), coalesce(2), return_exceptions=True)
    assert results[0] == 2 and results[2] == 4
    assert isinstance(results[1], ValueError)


async def test_a_failed_batch_fails_every_call_in_it_and_the_next_batch_still_runs() -> None:
    run = Doubler()
    coalesce = Coalescer(run, "test")
    failed = await asyncio.gather(coalesce(1), coalesce(FAIL_ALL), return_exceptions=True)
    assert all(isinstance(result, Unavailable) for result in failed)
    assert await coalesce(5) == 10


async def test_a_wrong_count_of_results_is_an_error_not_a_misattribution() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[:-1]

    coalesce = Coalescer(short, "test")
    with pytest.raises(RuntimeError, match="results for a batch"):
        await asyncio.gather(coalesce(1), coalesce(2))


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    run = Doubler()
    coalesce = Coalescer(run, "test")
    gone = asyncio.create_task(coalesce(1))
    kept = asyncio.create_task(coalesce(2))
    await asyncio.sleep(0.001)
    gone.cancel()
    assert await kept == 4
    assert run.batches == [[1, 2]]
