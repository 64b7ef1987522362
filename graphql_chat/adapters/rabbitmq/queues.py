"""The queues, all durable quorum queues on the default exchange, named after `QUEUE_NAME`:

NAME            accepted writes, consumed by workers in batches
NAME.search     messages stored while search was unavailable, indexed when it returns
NAME.dead       events no worker could apply (poison) or that the store set aside, kept
                for an operator
"""

from __future__ import annotations

from typing import Any

from aio_pika.abc import AbstractChannel, AbstractQueue

DELIVERY_LIMIT = 5  # redeliveries before a message is dead-lettered (quorum queues count them)
_QUORUM: dict[str, Any] = {"x-queue-type": "quorum"}


def search(name: str) -> str:
    return f"{name}.search"


def dead(name: str) -> str:
    return f"{name}.dead"


def every(name: str) -> tuple[str, str, str]:
    """The write queue and the two beside it."""
    return name, search(name), dead(name)


def write_queue_arguments(name: str) -> dict[str, Any]:
    return {
        **_QUORUM,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": dead(name),
        "x-delivery-limit": DELIVERY_LIMIT,
    }


async def declare(channel: AbstractChannel, name: str) -> AbstractQueue:
    """Declare the three queues (idempotent); returns the write queue."""
    await channel.declare_queue(dead(name), durable=True, arguments=_QUORUM)
    await channel.declare_queue(search(name), durable=True, arguments=_QUORUM)
    return await channel.declare_queue(name, durable=True, arguments=write_queue_arguments(name))
