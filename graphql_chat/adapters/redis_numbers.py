"""The numbers port on Redis: one Lua script per allocation, recovery that never reuses a number.

Keys (under `prefix`; the `{a:ID}` hash tag keeps one application's keys in one Redis Cluster
slot so each script touches a single slot):

    PREFIX:epoch                 set once the counters are known to be complete
    PREFIX:{a:ID}:chats          the last chat number handed out in application ID
    PREFIX:{a:ID}:c:N            the last message number handed out in chat N
    PREFIX:{a:ID}:rev            the last revision handed out in the application

A missing counter is seeded from the store's highest number (SET NX, then INCR), which is
right only while every number handed out is already in the store or was never handed out.
That holds after the epoch is set, because the epoch is only set once the write queue has
drained with allocation paused. So when Redis comes back empty (restart without persistence,
failover to a replica that never saw the epoch), every allocation answers `Unavailable` until
one process has waited for the queue to drain, cleared the counters and set the epoch again.

Message draws coalesce (`graphql_chat.batching`): the draws of concurrent requests go to Redis
as one pipeline of script calls, one round trip for all of them.

Revisions order the writes of a message. They come from the Redis server's clock (in
microseconds, strictly increasing per application), so they keep increasing across a Redis
data loss without any seeding.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, TimeoutError

from graphql_chat.batching import Coalescer
from graphql_chat.errors import NotFound, Unavailable
from graphql_chat.ports import Store

log = logging.getLogger(__name__)

_RECOVERING = -1
_UNSEEDED_CHATS = -2
_UNSEEDED_MESSAGES = -3
_NO_CHAT = 0

_DRAW_LANES = 4  # pipelines in flight at once, per process
_Draw = tuple[list[str], list[str | int]]  # the keys and arguments of one script call

# KEYS: epoch, chats counter. ARGV: seed (or "") for the chats counter.
_NEXT_CHAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[1] ~= '' then redis.call('SET', KEYS[2], ARGV[1], 'NX') end
if redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
return redis.call('INCR', KEYS[2])
"""

# KEYS: epoch, chats counter, messages counter.
# ARGV: chat number, increment (1 to allocate, 0 to read), seed for chats, seed for messages.
_NEXT_MESSAGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'NX') end
local chats = redis.call('GET', KEYS[2])
if not chats then return -2 end
if tonumber(ARGV[1]) > tonumber(chats) then return 0 end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'NX') end
if redis.call('EXISTS', KEYS[3]) == 0 then return -3 end
if ARGV[2] == '1' then return redis.call('INCR', KEYS[3]) end
return tonumber(redis.call('GET', KEYS[3]))
"""

# The message script and a revision in one round trip. KEYS: as above, plus the revision
# counter. ARGV: as above, plus the number an update names ("" when allocating).
# Returns {number or code, revision}; number 0 with a revision of 0: not issued.
_DRAW_MESSAGE = (
    _NEXT_MESSAGE.replace("return -1 end", "return {-1, 0} end")
    .replace("return -2 end", "return {-2, 0} end")
    .replace("return -3 end", "return {-3, 0} end")
    .replace("then return 0 end", "then return {0, 0} end")
    .replace(
        """if ARGV[2] == '1' then return redis.call('INCR', KEYS[3]) end
return tonumber(redis.call('GET', KEYS[3]))""",
        """local n
if ARGV[2] == '1' then n = redis.call('INCR', KEYS[3]) else
  n = tonumber(ARGV[5])
  if n > tonumber(redis.call('GET', KEYS[3])) then return {0, 1} end
end
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[4]) or '0')
local rev = math.max(last + 1, clock)
redis.call('SET', KEYS[4], rev)
return {n, rev}""",
    )
)

# KEYS: revision counter. Strictly increasing, and never behind the server clock.
_NEXT_REVISION = """
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local next = math.max(last + 1, clock)
redis.call('SET', KEYS[1], next)
return next
"""


class RedisNumbers:
    def __init__(
        self,
        url: str,
        store: Store,
        drained: Callable[[], Awaitable[bool]],
        prefix: str = "gc",
    ) -> None:
        # Requests wait for a free connection instead of failing when all are busy.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=64, timeout=5, socket_timeout=5, socket_connect_timeout=5
        )
        self._pool = pool
        self._redis = Redis(connection_pool=pool)
        self._store = store
        self._drained = drained
        self._prefix = prefix
        self._next_chat = self._redis.register_script(_NEXT_CHAT)
        self._next_message = self._redis.register_script(_NEXT_MESSAGE)
        self._next_revision = self._redis.register_script(_NEXT_REVISION)
        self._draw_message = self._redis.register_script(_DRAW_MESSAGE)
        self._draw: Coalescer[_Draw, list[int]] = Coalescer(self._draws, lanes=_DRAW_LANES)
        self._recovery: asyncio.Task[None] | None = None

    @property
    def _epoch(self) -> str:
        return f"{self._prefix}:epoch"

    def _app(self, application_id: int) -> str:
        return f"{self._prefix}:{{a:{application_id}}}"

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
        await self._redis.aclose()
        await self._pool.aclose()

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as error:
            raise Unavailable("Redis is unavailable") from error

    async def next_chat(self, application_id: int) -> int:
        keys = [self._epoch, f"{self._app(application_id)}:chats"]
        result = await self._call(self._next_chat, keys, [""])
        if result == _UNSEEDED_CHATS:
            seed = await self._store.max_chat_number(application_id)
            result = await self._call(self._next_chat, keys, [str(seed)])
        return self._number(result)

    async def next_message(self, application_id: int, chat_number: int) -> int:
        return await self._message(application_id, chat_number, allocate=True)

    async def message_issued(self, application_id: int, chat_number: int, number: int) -> bool:
        try:
            return number <= await self._message(application_id, chat_number, allocate=False)
        except NotFound:
            return False

    async def next_revision(self, application_id: int = 0) -> int:
        return self._number(
            await self._call(self._next_revision, [f"{self._app(application_id)}:rev"], [])
        )

    async def draw_message(self, application_id: int, chat_number: int) -> tuple[int, int]:
        return await self._drawn(application_id, chat_number, None)

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> int:
        _, revision = await self._drawn(application_id, chat_number, number)
        return revision

    async def _drawn(
        self, application_id: int, chat_number: int, update: int | None
    ) -> tuple[int, int]:
        app = self._app(application_id)
        keys = [self._epoch, f"{app}:chats", f"{app}:c:{chat_number}", f"{app}:rev"]
        flag = "1" if update is None else "0"
        wanted = "" if update is None else str(update)
        chats_seed = messages_seed = ""
        for _ in range(3):
            number, revision = await self._draw(
                (keys, [chat_number, flag, chats_seed, messages_seed, wanted])
            )
            if number == _RECOVERING:
                self._start_recovery()
                raise Unavailable("numbering is being recovered after a Redis data loss; retry")
            if number == _UNSEEDED_CHATS:
                chats_seed = str(await self._store.max_chat_number(application_id))
            elif number == _UNSEEDED_MESSAGES:
                messages_seed = str(
                    await self._store.max_message_number(application_id, chat_number)
                )
            elif number == _NO_CHAT and revision == 0:
                raise NotFound(f"chat {chat_number} not found")
            elif number == _NO_CHAT:
                raise NotFound(f"message {update} not found in chat {chat_number}")
            else:
                return int(number), int(revision)
        raise Unavailable("numbering is being recovered; retry shortly")

    async def _draws(self, draws: list[_Draw]) -> list[list[int] | BaseException]:
        """One pipeline of draw scripts; loads the script once if the server lost it."""
        for attempt in range(2):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for keys, args in draws:
                        pipe.evalsha(self._draw_message.sha, len(keys), *keys, *args)
                    results: list[object] = await pipe.execute(raise_on_error=False)
            except (RedisConnectionError, TimeoutError) as error:
                raise Unavailable("numbering (Redis) is unavailable; retry shortly") from error
            except RedisError as error:
                raise Unavailable(f"numbering failed: {error}") from error
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                await self._redis.script_load(_DRAW_MESSAGE)
                continue
            break
        return [
            Unavailable(f"numbering failed: {r}") if isinstance(r, BaseException) else r  # type: ignore[misc]
            for r in results
        ]

    async def _message(self, application_id: int, chat_number: int, allocate: bool) -> int:
        app = self._app(application_id)
        keys = [self._epoch, f"{app}:chats", f"{app}:c:{chat_number}"]
        flag = "1" if allocate else "0"
        chats_seed = messages_seed = ""
        for _ in range(3):
            result = await self._call(
                self._next_message, keys, [chat_number, flag, chats_seed, messages_seed]
            )
            if result == _UNSEEDED_CHATS:
                chats_seed = str(await self._store.max_chat_number(application_id))
            elif result == _UNSEEDED_MESSAGES:
                messages_seed = str(
                    await self._store.max_message_number(application_id, chat_number)
                )
            elif result == _NO_CHAT:
                raise NotFound(f"chat {chat_number} not found")
            else:
                return self._number(result)
        raise Unavailable("numbering is being recovered; retry shortly")

    async def _call(self, script: object, keys: list[str], args: list[object]) -> int:
        try:
            result = await script(keys=keys, args=args)  # type: ignore[operator]
        except (RedisConnectionError, TimeoutError) as error:
            raise Unavailable("numbering (Redis) is unavailable; retry shortly") from error
        except RedisError as error:
            raise Unavailable(f"numbering failed: {error}") from error
        if result == _RECOVERING:
            self._start_recovery()
            raise Unavailable("numbering is being recovered after a Redis data loss; retry")
        return int(result)

    @staticmethod
    def _number(result: int) -> int:
        if result < 1:
            raise Unavailable("numbering is being recovered; retry shortly")
        return result

    # -- recovery ------------------------------------------------------------------------------

    def start_recovery(self) -> None:
        """Recover in the background (allocations answer Unavailable until it is done)."""
        self._start_recovery()

    def _start_recovery(self) -> None:
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self.recover(), name="numbers-recovery")

    async def recover(self, poll: float = 0.2, settle: float = 1.5) -> None:
        """Set the epoch again once the write queue has drained; one process does it at a time.

        Queue statistics are sampled, so "drained" must hold twice, `settle` seconds apart
        (more than two sampling intervals), before the counters are trusted to the store.
        """
        lock = f"{self._prefix}:recovering"
        me = secrets.token_hex(8)
        while True:
            try:
                if await self._redis.exists(self._epoch):
                    return
                if await self._redis.set(lock, me, nx=True, px=60_000):
                    try:
                        if await self._settled(settle):
                            await self._reset_counters()
                            await self._redis.set(self._epoch, secrets.token_hex(8))
                            log.warning("numbering recovered: counters will reseed from the store")
                            return
                    finally:
                        if await self._redis.get(lock) == me.encode():
                            await self._redis.delete(lock)
            except (RedisError, Unavailable) as error:
                log.warning("numbering recovery waiting: %s", error)
            await asyncio.sleep(poll)

    async def _settled(self, settle: float) -> bool:
        if not await self._drained():
            return False
        if settle:
            await asyncio.sleep(settle)
            return await self._drained()
        return True

    async def _reset_counters(self) -> None:
        """Counters that survived a partial loss may be behind the store: reseed them all."""
        async for key in self._redis.scan_iter(match=f"{self._prefix}:{{a:*}}:*", count=1000):
            if not key.endswith(b":rev"):
                await self._redis.delete(key)

    async def drop(self) -> None:
        """Delete every key under the prefix (tests)."""
        async for key in self._redis.scan_iter(match=f"{self._prefix}:*", count=1000):
            await self._redis.delete(key)
