"""The pipeline port on RabbitMQ (aio-pika): confirmed, persistent publishes to a quorum queue.

`submit` returns once the broker has confirmed the message holding the event: from then on
the write survives a crash of this process, of a worker, or of the broker itself (quorum
queues replicate and persist before confirming). Workers (`graphql_chat.worker`) apply the
queue to the store.

Submits coalesce (`graphql_chat.batching`): events submitted while a publish awaits its
confirm leave together as the next message, `{"events": [...]}`. Under load one confirmed
message carries the writes of many requests, which is what the broker and the workers pay
for; alone, a write is published at once.

Queues, all durable quorum queues on the default exchange:

    NAME            accepted writes, consumed by workers in batches
    NAME.search     messages stored while search was unavailable, indexed when it returns
    NAME.dead       events no worker could apply (poison), kept for an operator
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError

from graphql_chat.batching import Coalescer
from graphql_chat.domain import Event, event_from_dict, event_to_dict
from graphql_chat.errors import InvalidInput, OutcomeUnknown, Unavailable

log = logging.getLogger(__name__)

DELIVERY_LIMIT = 5  # redeliveries before a message is dead-lettered (quorum queues count them)
MAX_EVENTS_PER_MESSAGE = 500
# A message closes once its body passes this size (a larger event travels alone), so what a
# worker holds is bounded: its prefetch times this.
MAX_MESSAGE_BYTES = 256 * 1024
PUBLISH_LANES = 1  # publishes awaiting their confirm at once, per process (2 measured no faster)


def queue_arguments(name: str) -> dict[str, Any]:
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": f"{name}.dead",
        "x-delivery-limit": DELIVERY_LIMIT,
    }


async def declare_queues(channel: AbstractChannel, name: str) -> AbstractQueue:
    await channel.declare_queue(f"{name}.dead", durable=True, arguments={"x-queue-type": "quorum"})
    await channel.declare_queue(
        f"{name}.search", durable=True, arguments={"x-queue-type": "quorum"}
    )
    return await channel.declare_queue(name, durable=True, arguments=queue_arguments(name))


def decode_events(body: bytes) -> list[Event]:
    """The events of one message: `{"events": [...]}`, or a single event (older publishers).

    Raises ValueError, KeyError or TypeError when the body is not that.
    """
    payload = orjson.loads(body)
    if isinstance(payload, dict) and "events" in payload:
        return [event_from_dict(item) for item in payload["events"]]
    return [event_from_dict(payload)]


def encode(payload: dict[str, Any]) -> aio_pika.Message:
    return _message(orjson.dumps(payload))


def _message(body: bytes) -> aio_pika.Message:
    return aio_pika.Message(
        body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, content_type="application/json"
    )


def event_bodies(items: list[bytes], limit: int = MAX_MESSAGE_BYTES) -> list[tuple[int, bytes]]:
    """Encoded events as message bodies `{"events": [...]}` of about `limit` bytes at most,
    in order, each with how many events it holds."""
    bodies: list[tuple[int, bytes]] = []
    encoded: list[bytes] = []
    size = 0
    for item in items:
        if encoded and size + len(item) > limit:
            bodies.append((len(encoded), b'{"events":[' + b",".join(encoded) + b"]}"))
            encoded, size = [], 0
        encoded.append(item)
        size += len(item) + 1
    if encoded:
        bodies.append((len(encoded), b'{"events":[' + b",".join(encoded) + b"]}"))
    return bodies


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
        self._lock = asyncio.Lock()
        self._submit: Coalescer[Event, None] = Coalescer(
            self._publish_events, max_batch=MAX_EVENTS_PER_MESSAGE, lanes=PUBLISH_LANES
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
                await declare_queues(channel, self.queue)
            except (
                TimeoutError,
                AMQPError,
                OSError,
                RuntimeError,
            ) as error:  # RuntimeError: reconnecting
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
        await self._submit(event)

    async def _publish_events(self, events: list[Event]) -> list[BaseException | None]:
        """One message per `MAX_MESSAGE_BYTES` of events, published together; each event
        succeeds or fails with the message that holds it. An event that cannot be encoded
        fails alone (the edge checks should have refused it)."""
        encoded: list[bytes] = []
        refused: dict[int, BaseException] = {}
        for index, event in enumerate(events):
            try:
                encoded.append(orjson.dumps(event_to_dict(event)))
            except orjson.JSONEncodeError:
                refused[index] = InvalidInput("the write holds text that cannot be stored")
        bodies = event_bodies(encoded)
        outcomes = await asyncio.gather(
            *[self._publish(self.queue, _message(body)) for _, body in bodies],
            return_exceptions=True,
        )
        published: list[BaseException | None] = []
        for (count, _), outcome in zip(bodies, outcomes, strict=True):
            if outcome is None:
                self.published += count
            published += [outcome] * count
        answers = iter(published)
        return [refused[i] if i in refused else next(answers) for i in range(len(events))]

    async def publish(self, routing_key: str, payload: dict[str, Any]) -> None:
        await self._publish(routing_key, encode(payload))

    async def _publish(self, routing_key: str, message: aio_pika.Message) -> None:
        channel = await self._ensure_channel()
        try:
            await channel.default_exchange.publish(
                message, routing_key=routing_key, timeout=self._timeout
            )
        except DeliveryError as error:  # the broker refused it: nothing was queued
            raise Unavailable("the write queue (RabbitMQ) refused the write; retry") from error
        except (TimeoutError, AMQPError, ChannelInvalidStateError, OSError, RuntimeError) as error:
            # Sent, but no confirm came back: the broker may have queued it all the same.
            self._channel = None
            raise OutcomeUnknown("the write queue (RabbitMQ) did not confirm") from error

    async def delete_queues(self) -> None:
        """Remove this pipeline's queues (tests)."""
        channel = await self._ensure_channel()
        for name in (self.queue, f"{self.queue}.search", f"{self.queue}.dead"):
            await channel.queue_delete(name)

    async def drained(self) -> bool:
        """The write queue holds nothing: no message ready and no consumer, so no delivery is
        held unsettled either (a quorum queue counts a cancelled consumer until every delivery
        it holds is settled). Both counts come from the queue itself over AMQP, exact at the
        moment they are read, not from the management API's sampled statistics."""
        channel = await self._ensure_channel()
        try:
            # Straight to the AMQP channel: a robust channel answers a repeated declare from
            # its cache, with the counts of the first declaration.
            raw = await channel.get_underlay_channel()
            declared = await raw.queue_declare(self.queue, passive=True)
        except (TimeoutError, AMQPError, ChannelInvalidStateError, OSError, RuntimeError) as error:
            self._channel = None
            raise Unavailable("the write queue (RabbitMQ) is unavailable") from error
        return declared.message_count == 0 and declared.consumer_count == 0
