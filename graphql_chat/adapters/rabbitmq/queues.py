"""The queues and exchanges, all durable, named after `QUEUE_NAME` (quorum queues):

NAME            accepted writes, consumed by workers in batches: write queue 0
NAME.1          write queue 1, its twin
NAME.in         where writes are published: bound to write queue 1 in odd generations;
                in even ones it routes nothing itself and hands every write to
NAME.in.0       its alternate exchange, bound to write queue 0 for good
NAME.search     messages stored while search was unavailable, indexed when it returns
NAME.dead       events no worker could apply (poison) or that the store set aside, kept
                for an operator

Why two write queues: a numbering recovery must know when every write accepted before it
began is stored. Under load a queue never empties, so the recovery steers new writes to the
other queue (`route`, one binding, atomic at the broker) and waits until the one it left is
drained. Workers consume both: the current one always, the other while it holds anything.
"""

from __future__ import annotations

from typing import Any

from aio_pika import ExchangeType
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue
from aio_pika.exceptions import AMQPError, ChannelInvalidStateError

DELIVERY_LIMIT = 5  # redeliveries before a message is dead-lettered (quorum queues count them)
LANES = 2  # write queues
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}

# What a call on a channel raises once the channel or its connection is gone (aio-pika's
# robust connection raises RuntimeError while it reconnects).
CHANNEL_GONE = (AMQPError, ChannelInvalidStateError, RuntimeError)
# And what a call that reaches the broker raises when it does not answer, or is not there.
BROKER_DOWN = (*CHANNEL_GONE, TimeoutError, OSError)


def search(name: str) -> str:
    return f"{name}.search"


def dead(name: str) -> str:
    return f"{name}.dead"


def lane(name: str, generation: int) -> str:
    """The write queue that takes new writes in `generation`."""
    return name if generation % LANES == 0 else f"{name}.{generation % LANES}"


def entry(name: str) -> str:
    return f"{name}.in"


def fallback(name: str) -> str:
    return f"{name}.in.0"


def every(name: str) -> tuple[str, ...]:
    """Every queue."""
    return *(lane(name, i) for i in range(LANES)), search(name), dead(name)


def exchanges(name: str) -> tuple[str, str]:
    return entry(name), fallback(name)


def write_queue_arguments(name: str) -> dict[str, Any]:
    return {
        **_QUORUM,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead(name),
        "x-delivery-limit": DELIVERY_LIMIT,
    }


async def declare(
    channel: AbstractChannel, name: str
) -> tuple[AbstractExchange, list[AbstractQueue]]:
    """Declare the queues and exchanges (idempotent, and leaving the route to write queue 1
    as it is); returns where to publish writes and the write queues."""
    await channel.declare_queue(dead(name), durable=True, arguments=_QUORUM)
    await channel.declare_queue(search(name), durable=True, arguments=_QUORUM)
    writes = [
        await channel.declare_queue(
            lane(name, i), durable=True, arguments=write_queue_arguments(name)
        )
        for i in range(LANES)
    ]
    always = await channel.declare_exchange(fallback(name), ExchangeType.FANOUT, durable=True)
    await writes[0].bind(always)
    published = await channel.declare_exchange(
        entry(name),
        ExchangeType.FANOUT,
        durable=True,
        arguments={"alternate-exchange": fallback(name)},
    )
    return published, writes
