"""Numbering on Redis as the tests build it: the draws, the recovery and its ledger on the
real engines, with the write queues' state given by the test (`drained`, `route`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from graphql_chat.adapters import redis_client
from graphql_chat.adapters.redis_numbers import RedisNumbers
from graphql_chat.adapters.redis_registry import RedisRegistry
from graphql_chat.adapters.redis_scripts import RedisScripts
from graphql_chat.adapters.sql_ledger import SqlLedger
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.numbering.ports import WriteQueues
from graphql_chat.numbering.recovery import (
    EpochPerApplication,
    GlobalEpoch,
    RecoveringNumbers,
    Recovery,
    Topology,
)


class _Queues:
    def __init__(
        self,
        drained: Callable[..., Awaitable[bool]],
        route: Callable[[int], Awaitable[None]] | None,
    ) -> None:
        self._drained = drained
        self._route = route

    async def drained(self, generation: int | None = None) -> bool:
        return await (self._drained() if generation is None else self._drained(generation))

    async def route(self, generation: int) -> None:
        assert self._route is not None, "numbering on Redis Cluster needs the queues' route"
        await self._route(generation)


class TestNumbers(RecoveringNumbers):
    """The numbers port on Redis with its recovery, and what tests do to it."""

    __test__ = False  # not a test class

    def __init__(
        self, scripts: RedisScripts, store: SqlStore, queues: WriteQueues, url: str
    ) -> None:
        topology: Topology = (
            EpochPerApplication() if scripts.keys.epoch_per_application else GlobalEpoch()
        )
        recovery = Recovery(topology, SqlLedger(store), queues, RedisRegistry(scripts))
        super().__init__(RedisNumbers(scripts, store), recovery)
        self._url = url
        self.key_prefix = scripts.keys.prefix

    async def recover(self) -> None:
        """Recover now, returning once an epoch is open (on Redis Cluster: once every
        application found lost so far is open again)."""
        for scope in self.recovery.topology.watched():
            self.recovery.request(scope)
        await self.recovery.settled()

    async def drop(self) -> None:
        await drop_keys(self._url, self.key_prefix)


def redis_numbering(
    url: str,
    store: SqlStore,
    drained: Callable[..., Awaitable[bool]],
    prefix: str,
    replicas: int = 0,
    replicas_timeout_ms: int = 500,
    route: Callable[[int], Awaitable[None]] | None = None,
) -> TestNumbers:
    scripts = RedisScripts(url, prefix, replicas, replicas_timeout_ms)
    return TestNumbers(scripts, store, _Queues(drained, route), url)


async def drop_keys(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (on a cluster, from every master)."""
    client: Redis = redis_client.connect(url)
    try:
        async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
            await client.delete(key)
    finally:
        await redis_client.close(client)
