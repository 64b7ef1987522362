"""Numbering's Redis: its keys, its connection, and its Lua scripts (`redis_lua/*.lua`, read
once), run in pipelines that end with `WAIT` when draws must reach replicas.

Keys (under `prefix`; the `{a:ID}` hash tag keeps one application's keys in one Redis Cluster
slot, so each script touches a single slot):

    PREFIX:epoch                 the open numbering epoch E (a decimal), or `recovering:ID`
                                 while the recovery ID holds it (a lease that expires)
    PREFIX:{a:ID}:epoch          the same, for application ID alone (Redis Cluster)
    PREFIX:{a:ID}:eE:chats       the last chat number handed out in application ID in epoch E
    PREFIX:{a:ID}:eE:c:N         the last message number handed out in its chat N in epoch E
    PREFIX:{a:ID}:k:KEY          an idempotency key's claim (KEY: its hash), until its window
                                 ends: "FINGERPRINT NUMBER REVISION EPOCH TIME STORED"
    PREFIX:{a:ID}:rev            the last revision handed out in the application (Redis's
                                 clock in microseconds, raised to stay strictly increasing)
    PREFIX:token:TOKEN           the application id of TOKEN (tokens never change)
    PREFIX:recovery              the lease of the one recovery running at a time
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Literal, TypeVar, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from graphql_chat.adapters import redis_client
from graphql_chat.errors import Unavailable

T = TypeVar("T")

Script = Literal["draw", "new_application", "hold", "renew", "release"]
Call = tuple[list[str], list[str | int]]  # the keys and arguments of one script call
Answer = list[int] | int | Unavailable

_CONNECTIONS = 64  # per process (on a cluster: per master)
_CONNECTION_WAIT = 5.0  # seconds a call waits for a free connection


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Where each thing lives. The one choice the topology makes here: whether every
    application's draws belong to the one global epoch, or each to its own (Redis Cluster:
    an epoch in the application's slot)."""

    prefix: str
    epoch_per_application: bool

    def app(self, application_id: int) -> str:
        return f"{self.prefix}:{{a:{application_id}}}"

    def epoch(self, scope: int | None) -> str:
        """The key of an epoch: the global one (None), or an application's."""
        return f"{self.prefix}:epoch" if scope is None else f"{self.app(scope)}:epoch"

    def scope(self, application_id: int) -> int | None:
        """Which epoch an application's draws belong to."""
        return application_id if self.epoch_per_application else None

    def epoch_of(self, application_id: int) -> str:
        return self.epoch(self.scope(application_id))

    def token(self, token: str) -> str:
        return f"{self.prefix}:token:{token}"

    def claim(self, application_id: int, key_hash: str) -> str:
        return f"{self.app(application_id)}:k:{key_hash}"

    @property
    def lease(self) -> str:
        return f"{self.prefix}:recovery"


class RedisScripts:
    """One Redis (a server, a Sentinel's master, or a cluster) and numbering's scripts on it.

    With `replicas`, a pipeline of calls ends with `WAIT` on the same connection: the calls
    count only once that many replicas hold them (so a failover to one of them keeps every
    number handed out); if fewer do in time, they fail (their numbers are never used: a gap,
    not a reuse). On Redis Cluster each master's share of the pipeline ends with a `WAIT` of
    its own, on its connection."""

    def __init__(
        self, url: str, prefix: str, replicas: int = 0, replicas_timeout_ms: int = 500
    ) -> None:
        # Requests wait for a free connection instead of failing when all are busy.
        self.redis = redis_client.connect(
            url, max_connections=_CONNECTIONS, socket_timeout=5, socket_connect_timeout=5
        )
        # Sentinel's pool and a cluster's fail at once when every connection is busy: calls
        # wait for one here instead, as with the single server's pool.
        self._gate = None if redis_client.waits(url) else asyncio.Semaphore(_CONNECTIONS)
        self._cluster = redis_client.is_cluster(url)
        self.keys = RedisKeys(prefix, epoch_per_application=self._cluster)
        self._replicas = replicas
        self._replicas_timeout_ms = replicas_timeout_ms
        folder = files("graphql_chat.adapters") / "redis_lua"
        self._scripts = {
            name: self.redis.register_script((folder / f"{name}.lua").read_text())
            for name in ("draw", "new_application", "hold", "renew", "release")
        }

    async def start(self) -> None:
        await self.guarded(redis_client.ready(self.redis))

    async def close(self) -> None:
        await redis_client.close(self.redis)

    async def ping(self) -> None:
        """Every master answers."""
        if self._cluster:
            cluster = cast(RedisCluster, self.redis)
            await self.guarded(cluster.ping(target_nodes=RedisCluster.PRIMARIES))
        else:
            await self.guarded(self.redis.ping())

    async def run(self, name: Script, calls: Sequence[Call]) -> list[Answer]:
        """One pipeline of calls of a script, one round trip; loads the script once if the
        server lost it. Each answer, or `Unavailable` for a call that failed (or whose
        replicas did not confirm it in time)."""
        script = self._scripts[name]
        # The master each call goes to, as the slot map says before sending (cluster).
        masters = self._masters(calls) if self._replicas and self._cluster else []
        results: list[object] = []
        for attempt in range(2):

            async def send() -> list[object]:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
                    if masters:
                        for node in {node.name: node for node in masters}.values():
                            pipe.execute_command(
                                "WAIT",
                                self._replicas,
                                self._replicas_timeout_ms,
                                target_nodes=node,
                            )
                    elif self._replicas:
                        pipe.execute_command("WAIT", self._replicas, self._replicas_timeout_ms)
                    return await pipe.execute(raise_on_error=False)

            results = await self.guarded(send())
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                await self.guarded(self.redis.script_load(script.script))
                continue
            break
        answers: list[object] = results[: len(calls)]
        if self._replicas:
            answers = self._replicated(calls, answers, results[len(calls) :], masters)
        return [
            Unavailable(f"numbering failed: {r}") if isinstance(r, BaseException) else r  # type: ignore[misc]
            for r in answers
        ]

    def _replicated(
        self, calls: Sequence[Call], answers: list[object], held: list[object], masters: list[Any]
    ) -> list[object]:
        """The answers whose calls the replicas hold; `Unavailable` in place of the others."""
        unreplicated = Unavailable(
            f"numbering (Redis) could not reach {self._replicas} replica(s) in "
            f"{self._replicas_timeout_ms} ms (REDIS_WAIT_REPLICAS); retry shortly"
        )
        if not masters:
            if not isinstance(held[0], int) or held[0] < self._replicas:
                return [unreplicated] * len(calls)
            return answers
        names = list({node.name: node for node in masters})
        replicated = {
            name
            for name, count in zip(names, held, strict=True)
            if isinstance(count, int) and count >= self._replicas
        }
        # A call redirected to another master (its slot moved meanwhile) ran on another
        # connection than its WAIT: not known to be replicated.
        now = self._masters(calls)
        return [
            answer if before.name in replicated and after.name == before.name else unreplicated
            for answer, before, after in zip(answers, masters, now, strict=True)
        ]

    def _masters(self, calls: Sequence[Call]) -> list[Any]:
        """The cluster master each call's key belongs to, by the client's slot map."""
        cluster = cast(RedisCluster, self.redis)
        return [cluster.get_node_from_key(keys[0]) for keys, _ in calls]

    async def one(self, name: Script, keys: list[str], args: list[str | int]) -> Answer:
        """One call of a script, as `run` makes it."""
        (answer,) = await self.run(name, [(keys, args)])
        if isinstance(answer, Unavailable):
            raise answer
        return answer

    async def guarded(self, call: Awaitable[T]) -> T:
        """`call`, once a connection is free; Redis's errors as `Unavailable`."""
        try:
            if self._gate is None:
                return await call
            try:
                async with asyncio.timeout(_CONNECTION_WAIT):
                    await self._gate.acquire()
            except TimeoutError:
                if inspect.iscoroutine(call):
                    call.close()
                raise
            try:
                return await call
            finally:
                self._gate.release()
        except (RedisConnectionError, RedisTimeoutError, TimeoutError) as error:
            raise Unavailable("numbering (Redis) is unavailable; retry shortly") from error
        except RedisError as error:
            raise Unavailable(f"numbering failed: {error}") from error
