"""A subscription event is executed once for all the subscribers that sent the same document
and variables; anything else is executed per subscriber."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.extensions import ParserCache

from graphql_chat.graphql.events import SharedEvents

executions: list[tuple[int, int]] = []


@strawberry.type
class Item:
    number: int
    shared: strawberry.Private[bool]

    @strawberry.field
    def doubled(self, times: int = 2) -> int:
        executions.append((self.number, times))
        return self.number * times


EVENTS = [Item(number=n, shared=True) for n in range(3)]


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def items(self, shared: bool = True) -> AsyncGenerator[Item, None]:
        for event in EVENTS:
            yield event if shared else Item(number=event.number, shared=False)


# One parsed document per query text, as the product's document cache gives.
schema = strawberry.Schema(
    query=Query,
    subscription=Subscription,
    execution_context_class=SharedEvents,
    extensions=[ParserCache],
)


async def _run(document: str, variables: dict[str, object] | None = None) -> list[object]:
    stream = await schema.subscribe(document, variable_values=variables)
    assert not isinstance(stream, strawberry.types.ExecutionResult)
    return [result.data async for result in stream]


async def test_the_same_document_on_the_same_event_runs_once() -> None:
    executions.clear()
    document = "subscription($t: Int!) { items { number doubled(times: $t) } }"
    first = await _run(document, {"t": 3})
    second = await _run(document, {"t": 3})
    assert first == second == [{"items": {"number": n, "doubled": n * 3}} for n in range(3)]
    assert executions == [(0, 3), (1, 3), (2, 3)]
    # Other variables are another result.
    assert await _run(document, {"t": 5}) == [
        {"items": {"number": n, "doubled": n * 5}} for n in range(3)
    ]
    assert executions[3:] == [(0, 5), (1, 5), (2, 5)]


async def test_events_not_shared_run_for_each_subscriber() -> None:
    executions.clear()
    document = "subscription { items(shared: false) { doubled } }"
    await _run(document)
    await _run(document)
    assert len(executions) == 6
