"""The epoch registry on Redis (`graphql_chat.numbering.ports.Registry`): the epoch keys the
draws read (`redis_scripts` lists them), held by a recovery for a lease while lost."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from graphql_chat.adapters.redis_scripts import Answer, Call, RedisScripts, Script
from graphql_chat.numbering.ports import Held, Scope
from graphql_chat.ports import Claimed

_LEASE_MS = 10_000  # a recovery's holds and lease expire unless renewed within this


class RedisRegistry:
    def __init__(self, scripts: RedisScripts) -> None:
        self._scripts = scripts
        self._redis = scripts.redis
        self._keys = scripts.keys

    async def is_open(self, scope: Scope) -> bool:
        epoch = await self._scripts.guarded(self._redis.get(self._keys.epoch(scope)))
        return isinstance(epoch, bytes) and epoch.isdigit()

    async def hold(self, scopes: Sequence[Scope], holder: str) -> list[Held]:
        calls: list[Call] = [([self._keys.epoch(s)], [holder, _LEASE_MS]) for s in scopes]
        return [Held(answer) for answer in await self._each("hold", calls)]

    async def renew(self, scopes: Sequence[Scope], holder: str) -> bool:
        calls: list[Call] = [([self._keys.epoch(s)], [holder, _LEASE_MS, ""]) for s in scopes]
        return all(await self._each("renew", calls)) and await self.lease(holder)

    async def publish(self, epochs: Mapping[Scope, int], holder: str) -> dict[Scope, bool]:
        calls: list[Call] = [
            ([self._keys.epoch(scope)], [holder, _LEASE_MS, epoch])
            for scope, epoch in epochs.items()
        ]
        return dict(zip(epochs, map(bool, await self._each("renew", calls)), strict=True))

    async def lease(self, holder: str) -> bool:
        (taken,) = await self._each("hold", [([self._keys.lease], [holder, _LEASE_MS])])
        return taken == Held.MINE.value

    async def release(self, holder: str) -> None:
        await self._each("release", [([self._keys.lease], [holder])])

    async def restore(self, claims: Sequence[Claimed]) -> None:
        now = time.time_ns() // 1000
        async with self._redis.pipeline(transaction=False) as pipe:
            for c in claims:
                value = f"{c.fingerprint} {c.number} {c.revision} {c.epoch} {c.at} 1"
                ttl = max((c.expires - now) // 1000, 1)
                pipe.set(self._keys.claim(c.application_id, c.key), value, px=ttl, nx=True)
            await self._scripts.guarded(pipe.execute())

    async def _each(self, name: Script, calls: list[Call]) -> list[int]:
        """Calls of a single-key script, one pipeline (a round trip per node)."""
        answers: list[Answer] = await self._scripts.run(name, calls)
        counted: list[int] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            assert isinstance(answer, int)
            counted.append(answer)
        return counted
