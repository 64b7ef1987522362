"""The pipeline port on RabbitMQ (aio-pika): confirmed, persistent publishes to a quorum queue.

`submit` returns once the broker has confirmed the message holding the event: from then on
the write survives a crash of this process, of a worker, or of the broker itself (quorum
queues replicate and persist before confirming). Workers (`consumer`) apply the queue to the
store. Writes go through the exchange `QUEUE_NAME.in` to the write queue of the moment (one
of two: `queues`), which `route` changes for a numbering recovery on Redis Cluster.

Submits coalesce (`graphql_chat.batching`): events submitted while a publish awaits its
confirm leave together as the next message, `{"events": [...]}`. Under load one confirmed
message carries the writes of many requests, which is what the broker and the workers pay
for; alone, a write is published at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aio_pika
import aiormq.abc
import orjson
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import DeliveryError
from opentelemetry.trace import SpanKind

from graphql_chat import tracing
from graphql_chat.adapters.rabbitmq import queues
from graphql_chat.adapters.rabbitmq.wire import (
    encode,
    event_bodies,
    event_to_dict,
    message,
    traces,
)
from graphql_chat.batching import Coalescer
from graphql_chat.domain import Event
from graphql_chat.errors import InvalidInput, OutcomeUnknown, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_EVENTS_PER_MESSAGE = 500
PUBLISHES_IN_FLIGHT = (
    1  # publishes awaiting their confirm at once, per process (2 measured no faster)
)
_PUBLISH = {"messaging.system": "rabbitmq", "messaging.operation.type": "send"}


class RabbitPipeline:
    def __init__(
        self,
        url: str,
        queue: str = "graphql-chat.writes",
        publish_timeout: float = 5.0,
    ) -> None:
        self._url = url
        self.queue = queue
        self._timeout = publish_timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._entry: AbstractExchange | None = None
        self._lock = asyncio.Lock()
        # Each event with its trace context (a `traceparent`, "" when not traced).
        self._submit: Coalescer[tuple[Event, str], None] = Coalescer(
            self._publish_events,
            "publish",
            max_batch=MAX_EVENTS_PER_MESSAGE,
            in_flight=PUBLISHES_IN_FLIGHT,
        )
        self.published = 0  # events confirmed by the broker

    async def start(self) -> None:
        try:
            await self._ensure_channel()
        except Unavailable:
            log.warning("RabbitMQ is unavailable at start; writes will fail until it returns")

    async def _ensure_channel(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            try:
                if self._connection is None or self._connection.is_closed:
                    self._connection = await aio_pika.connect_robust(self._url, timeout=5)
                channel = await self._connection.channel(publisher_confirms=True)
                self._entry, _ = await queues.declare(channel, self.queue)
            except queues.BROKER_DOWN as error:
                raise Unavailable("the write queue (RabbitMQ) is unavailable; retry") from error
            self._channel = channel
            return channel

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
            self._channel = None

    async def ping(self) -> None:
        await self._ensure_channel()

    async def submit(self, event: Event) -> None:
        if not tracing.on:
            await self._submit((event, ""))
            return
        with tracing.tracer.start_as_current_span(
            "graphql-chat publish", kind=SpanKind.PRODUCER, attributes=_PUBLISH
        ):
            await self._submit((event, tracing.current_parent()))

    async def _publish_events(self, items: list[tuple[Event, str]]) -> list[BaseException | None]:
        """One message per `MAX_MESSAGE_BYTES` of events, published together; each event
        succeeds or fails with the message that holds it. An event that cannot be encoded
        fails alone (the edge checks should have refused it). Traced events' contexts go in
        the message's `traceparents` header, in the order of its events."""
        encoded: list[bytes] = []
        parents: list[str] = []
        refused: dict[int, BaseException] = {}
        for index, (event, parent) in enumerate(items):
            try:
                encoded.append(orjson.dumps(event_to_dict(event)))
                parents.append(parent)
            except orjson.JSONEncodeError:
                refused[index] = InvalidInput("the write holds text that cannot be stored")
        bodies = event_bodies(encoded)
        messages = []
        first = 0
        for count, body in bodies:
            held = parents[first : first + count]
            first += count
            messages.append(message(body, traces(held) if any(held) else None))
        outcomes = await asyncio.gather(
            *[self._publish("", sent, writes=True) for sent in messages],
            return_exceptions=True,
        )
        published: list[BaseException | None] = []
        for (count, _), outcome in zip(bodies, outcomes, strict=True):
            if outcome is None:
                self.published += count
            published += [outcome] * count
        answers = iter(published)
        return [refused[i] if i in refused else next(answers) for i in range(len(items))]

    async def publish(self, routing_key: str, payload: dict[str, Any]) -> None:
        await self._publish(routing_key, encode(payload))

    async def _publish(
        self, routing_key: str, message: aio_pika.Message, writes: bool = False
    ) -> None:
        """To the queue `routing_key`, or with `writes` to the write queue of the moment."""
        channel = await self._ensure_channel()
        exchange = self._entry if writes and self._entry is not None else channel.default_exchange
        try:
            await exchange.publish(message, routing_key=routing_key, timeout=self._timeout)
        except DeliveryError as error:  # the broker refused it: nothing was queued
            raise Unavailable("the write queue (RabbitMQ) refused the write; retry") from error
        except queues.BROKER_DOWN as error:
            # Sent, but no confirm came back: the broker may have queued it all the same.
            self._channel = None
            raise OutcomeUnknown("the write queue (RabbitMQ) did not confirm") from error

    async def drained(self, generation: int | None = None) -> bool:
        """The write queue of `generation` (None: each write queue) holds nothing: no message
        ready and no consumer, so no delivery is held unsettled either (a quorum queue counts
        a cancelled consumer until every delivery it holds is settled). Both counts come from
        the queue itself over AMQP, exact at the moment they are read, not from the
        management API's sampled statistics."""
        for lane in range(queues.LANES) if generation is None else [generation]:
            name = queues.lane(self.queue, lane)

            async def declare(raw: aiormq.abc.AbstractChannel, name: str = name) -> Any:
                return await raw.queue_declare(name, passive=True)

            declared = await self._raw(declare)
            if declared.message_count or declared.consumer_count:
                return False
        return True

    async def route(self, generation: int) -> None:
        """New writes go to the write queue of `generation` from now on (idempotent). Bound
        straight on the AMQP channel: a robust channel would bind again after a reconnect,
        whatever the route had become meanwhile."""
        exchange, queue = queues.entry(self.queue), queues.lane(self.queue, 1)
        if generation % queues.LANES:
            await self._raw(lambda raw: raw.queue_bind(queue, exchange))
        else:
            await self._raw(lambda raw: raw.queue_unbind(queue, exchange))

    async def _raw(self, call: Callable[[aiormq.abc.AbstractChannel], Awaitable[T]]) -> T:
        """`call` on the AMQP channel itself: a robust channel answers a repeated declare
        from its cache, with the counts of the first declaration."""
        channel = await self._ensure_channel()
        try:
            return await call(await channel.get_underlay_channel())
        except queues.BROKER_DOWN as error:
            self._channel = None
            raise Unavailable("the write queue (RabbitMQ) is unavailable") from error
