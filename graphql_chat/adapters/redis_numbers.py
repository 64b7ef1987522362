"""The numbers port on Redis: one Lua script per draw, and a recovery that never reuses a number.

Keys (under `prefix`; the `{a:ID}` hash tag keeps one application's keys in one Redis Cluster
slot, so each script touches a single slot):

    PREFIX:epoch                 the open numbering epoch E (a decimal), or `recovering:ID`
                                 while the recovery ID holds it (a lease that expires)
    PREFIX:{a:ID}:eE:chats       the last chat number handed out in application ID in epoch E
    PREFIX:{a:ID}:eE:c:N         the last message number handed out in its chat N in epoch E
    PREFIX:{a:ID}:k:KEY          an idempotency key's claim (KEY: its hash), until its window
                                 ends: "FINGERPRINT NUMBER REVISION EPOCH TIME STORED"
    PREFIX:{a:ID}:rev            the last revision handed out in the application (Redis's
                                 clock in microseconds, raised to stay strictly increasing):
                                 a draw's time, so that times and numbers agree
    PREFIX:token:TOKEN           the application id of TOKEN (tokens never change)

Every draw reads the epoch in the same script and answers with it; events carry it to the
workers. A counter is seeded from the store's highest number only in the epoch it belongs to,
and a new chat's or application's counter starts at 0 without asking the store.

**Recovery.** When the epoch key is missing (Redis lost its data), draws answer `Unavailable`
and one process recovers (`Recovery`): it claims the key (`recovering:ID`, a lease), takes a
fencing token from the store, waits until the write queue is empty with no consumer holding
a delivery (exact facts from the broker: the queue's ready count and consumer count, which
counts a consumer until every delivery it holds is settled), then retires the old epoch in the
store with that token and publishes the next epoch in Redis if its claim still holds. Counters
are per epoch, so the new epoch starts from the store without deleting anything.

Why no number is handed out twice (the argument in full is in the README):
- an API process acknowledges a write only if, after the broker confirmed it, Redis still shows
  the epoch it was drawn in (`still_open`); so every acknowledged write of epoch E was in the
  queue before E vanished from Redis, before the recovery's claim, before its drain;
- the drain ends when every message enqueued before it is settled, so every acknowledged write
  of E is in the store when E is retired;
- from the retirement on, workers set aside writes of E (they check the epoch in the batch's
  transaction), and E's counters are never used again: the next epoch seeds from a store that
  holds every number E will ever have.

Message draws coalesce (`graphql_chat.batching`): the draws of concurrent requests go to Redis
as one pipeline of script calls, one round trip for all of them.

**Idempotency keys** are claimed by the draw script itself, in the same call: a key already
claimed answers the draw that claimed it (or a conflict, for another create), otherwise the
draw claims it for its window. Claims are stored with their writes too; a recovery puts the
stored ones back before it opens the next epoch, so a Redis data loss forgets no key whose
write was acknowledged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar, cast

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, TimeoutError

from graphql_chat.adapters import redis_client
from graphql_chat.batching import Coalescer
from graphql_chat.domain import Claim
from graphql_chat.errors import KeyReused, NotFound, Recovering, Unavailable
from graphql_chat.ports import Drawn, Store

log = logging.getLogger(__name__)

T = TypeVar("T")

_RECOVERING = -1
_UNSEEDED_CHATS = -2
_UNSEEDED_MESSAGES = -3
_EPOCH_CHANGED = -4
_CLAIM_CONFLICT = -5
_NO_CHAT = 0

_DRAW_LANES = 4  # pipelines in flight at once, per process
_Draw = tuple[list[str], list[str | int]]  # the keys and arguments of one script call

# The epoch and the application's key prefix for it: shared by the scripts.
_EPOCH = """
local epoch = tonumber(redis.call('GET', KEYS[1]))
if not epoch then return {-1, 0, 0} end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= epoch then return {-4, 0, epoch} end
local app = ARGV[2] .. ':e' .. epoch
"""

# An idempotency key already claimed (ARGV[K]: its hash, ARGV[K+1]: the fingerprint of this
# create): answers the draw that claimed it, {number, revision, epoch, time, 1 + stored}, or
# a conflict. K is the index of the claim's arguments.
_CLAIM = """
local claim = nil
if ARGV[K] ~= '' then
  claim = ARGV[2] .. ':k:' .. ARGV[K]
  local found = redis.call('GET', claim)
  if found then
    local fp, n, r, e, t, s = string.match(found, '^(%x+) (%d+) (%d+) (%d+) (%d+) (%d)$')
    if fp ~= ARGV[K + 1] then return {-5, 0, epoch} end
    return {tonumber(n), tonumber(r), tonumber(e), tonumber(t), 1 + tonumber(s)}
  end
end
"""

# Claims the key for the draw just made (n, its REVISION, epoch, at the time rev), for
# ARGV[K+2] seconds.
_CLAIMED_BY = """
if claim then
  local drawn = string.format('%d %.0f %d %.0f', n, REVISION, epoch, rev)
  redis.call('SET', claim, ARGV[K + 1] .. ' ' .. drawn .. ' 0', 'EX', ARGV[K + 2])
end
"""

# The application's next revision: Redis's clock in microseconds, strictly increasing.
_REVISION = """
local now = redis.call('TIME')
local clock = tonumber(now[1]) * 1000000 + tonumber(now[2])
local rev = math.max(tonumber(redis.call('GET', ARGV[2] .. ':rev') or '0') + 1, clock)
redis.call('SET', ARGV[2] .. ':rev', rev)
"""

# KEYS: epoch. ARGV: seed epoch (or ""), application prefix, seed for the chats counter,
# idempotency key hash (or ""), fingerprint, window.
# Returns {chat number or code, time, epoch[, time, replayed]}. The new chat's message
# counter starts at 0.
_DRAW_CHAT = (
    _EPOCH
    + _CLAIM.replace("ARGV[K", "ARGV[4")
    + """
if ARGV[3] ~= '' then redis.call('SET', app .. ':chats', ARGV[3], 'NX') end
if redis.call('EXISTS', app .. ':chats') == 0 then return {-2, 0, epoch} end
local n = redis.call('INCR', app .. ':chats')
redis.call('SET', app .. ':c:' .. n, 0, 'NX')
"""
    + _REVISION
    + _CLAIMED_BY.replace("ARGV[K", "ARGV[4").replace("REVISION", "0")
    + """
return {n, rev, epoch}
"""
)

# KEYS: epoch. ARGV: seed epoch, application prefix, chat number, message number to revise
# ("" to draw a new one), seed for chats, seed for messages, idempotency key hash (or ""),
# fingerprint, window.
# Returns {number or code, revision, epoch[, time, replayed]}; {0, 0, _}: no such chat;
# {0, 1, _}: no such message.
_DRAW_MESSAGE = (
    _EPOCH
    + _CLAIM.replace("ARGV[K", "ARGV[7")
    + """
if ARGV[5] ~= '' then redis.call('SET', app .. ':chats', ARGV[5], 'NX') end
local chats = redis.call('GET', app .. ':chats')
if not chats then return {-2, 0, epoch} end
if tonumber(ARGV[3]) > tonumber(chats) then return {0, 0, epoch} end
local counter = app .. ':c:' .. ARGV[3]
if ARGV[6] ~= '' then redis.call('SET', counter, ARGV[6], 'NX') end
local last = redis.call('GET', counter)
if not last then return {-3, 0, epoch} end
local n
if ARGV[4] == '' then n = redis.call('INCR', counter) else
  n = tonumber(ARGV[4])
  if n > tonumber(last) then return {0, 1, epoch} end
end
"""
    + _REVISION
    + _CLAIMED_BY.replace("ARGV[K", "ARGV[7").replace("REVISION", "rev")
    + """
return {n, rev, epoch}
"""
)

# KEYS: epoch. ARGV: application prefix, the epoch to open when there is none ("": none).
# A new application's chats counter starts at 0.
_NEW_APPLICATION = """
local epoch = tonumber(redis.call('GET', KEYS[1]))
if not epoch and ARGV[2] ~= '' and redis.call('SET', KEYS[1], ARGV[2], 'NX') then
  epoch = tonumber(ARGV[2])
end
if epoch then redis.call('SET', ARGV[1] .. ':e' .. epoch .. ':chats', 0, 'NX') end
return 0
"""

# KEYS: an application's epoch (Redis Cluster). ARGV: a recovery's claim, lease (ms).
# Returns 1 when the claim is (now) this recovery's, 0 when an epoch is open, -1 when another
# recovery holds it.
_CLAIM_APPLICATION = """
local current = redis.call('GET', KEYS[1])
if not current then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if current == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if tonumber(current) then return 0 end
return -1
"""

# KEYS: epoch. ARGV: this recovery's claim, lease (ms), and the epoch to publish ("" to renew).
# Returns 1 when the claim holds (and the epoch was published, if one was given), else 0.
_CLAIMED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
"""

# KEYS: epoch. ARGV: a value that is neither an epoch nor a claim (an older release's).
_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

_CLAIM_LEASE_MS = 10_000
_CONNECTIONS = 64  # per process (on a cluster: per master)
_CONNECTION_WAIT = 5.0  # seconds a call waits for a free connection


class RedisNumbers:
    def __init__(
        self,
        url: str,
        store: Store,
        drained: Callable[..., Awaitable[bool]],  # the pipeline's: `drained([generation])`
        prefix: str = "gc",
        replicas: int = 0,
        replicas_timeout_ms: int = 500,
        route: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        # Requests wait for a free connection instead of failing when all are busy.
        self._redis = redis_client.connect(
            url, max_connections=_CONNECTIONS, socket_timeout=5, socket_connect_timeout=5
        )
        # Sentinel's pool and a cluster's fail at once when every connection is busy: calls
        # wait for one here instead, as with the single server's pool.
        self._gate = None if redis_client.waits(url) else asyncio.Semaphore(_CONNECTIONS)
        # Draws are acknowledged only once this many replicas hold them (see `_pipelined`).
        self._replicas = replicas
        self._replicas_timeout_ms = replicas_timeout_ms
        self._store = store
        self._prefix = prefix
        self._epoch_key = f"{prefix}:epoch"
        # On Redis Cluster each application has its own epoch, in its own slot.
        self._cluster = redis_client.is_cluster(url)
        self._scripts = {
            source: self._redis.register_script(source)
            for source in (
                _DRAW_CHAT,
                _DRAW_MESSAGE,
                _NEW_APPLICATION,
                _CLAIMED,
                _FORGET,
                _CLAIM_APPLICATION,
            )
        }
        self._draw: Coalescer[_Draw, list[int]] = Coalescer(
            self._draws, "redis_draw", lanes=_DRAW_LANES
        )
        self._open: Coalescer[tuple[int, int], bool] = Coalescer(
            self._epochs_open, "redis_epoch", lanes=_DRAW_LANES
        )
        self._recovery: Recovery | ApplicationRecovery
        if self._cluster:
            if route is None:
                raise ValueError("numbering on Redis Cluster needs the pipeline's route")
            self._recovery = ApplicationRecovery(self, store, drained, route)
        else:
            self._recovery = Recovery(self, store, drained)

    def _epoch_of(self, application_id: int) -> str:
        """The key of the epoch an application's draws belong to."""
        return f"{self._app(application_id)}:epoch" if self._cluster else self._epoch_key

    def _recovering(self, application_id: int) -> Unavailable:
        """Numbering was lost for this application: start (or join) its recovery."""
        if isinstance(self._recovery, ApplicationRecovery):
            self._recovery.request(application_id)
        else:
            self._recovery.start()
        return Recovering()

    def _app(self, application_id: int) -> str:
        return f"{self._prefix}:{{a:{application_id}}}"

    @property
    def key_prefix(self) -> str:
        """Every key this numbering uses starts with this and a colon."""
        return self._prefix

    async def start(self) -> None:
        """Open numbering if Redis has no epoch: at once for a new deployment; a recovery that
        must wait for the queue goes on in the background (draws answer `Unavailable`). On
        Redis Cluster, applications are recovered one by one when they are drawn in; the
        store's global epoch is opened first, the one new applications start in."""
        if isinstance(self._recovery, ApplicationRecovery):
            await self._guarded(redis_client.ready(self._redis))
            if (await self._store.numbering()).epoch == 0:  # no draw can be of epoch 0
                await self._store.open_epoch(0, await self._store.claim_recovery(pause=False))
            return
        self._recovery.start()
        await self._recovery.settled(within=2.0)

    async def close(self) -> None:
        await self._recovery.cancel()
        await redis_client.close(self._redis)

    async def ping(self) -> None:
        """Redis answers and numbering is open (not recovering). On Redis Cluster, numbering
        recovers per application while the others draw: every master answers."""
        if self._cluster:
            await self._guarded(self._redis.ping(target_nodes=RedisCluster.PRIMARIES))
            return
        epoch = await self._guarded(self._redis.get(self._epoch_key))
        if not isinstance(epoch, bytes) or not epoch.isdigit():
            self._recovery.start()
            raise Recovering(self._recovery.status)

    # -- draws ---------------------------------------------------------------------------------

    async def next_chat(self, application_id: int, claim: Claim | None = None) -> Drawn:
        app = self._app(application_id)
        claimed = _claim_args(claim)
        unseeded: list[Any] = ["", app, "", *claimed]
        args = unseeded
        # Unseeded, seeded, drawn; once more if an epoch opened while the seed was read.
        for _ in range(5):
            answer = await self._run(_DRAW_CHAT, application_id, args)
            number, at, epoch = answer[:3]
            if number == _EPOCH_CHANGED:  # the seed was read in an older epoch: read it again
                args = unseeded
            elif number == _UNSEEDED_CHATS:
                args = [epoch, app, await self._store.max_chat_number(application_id), *claimed]
            elif number == _CLAIM_CONFLICT:
                raise KeyReused()
            elif len(answer) == 5:
                return _replayed(answer)
            elif number > 0:
                return Drawn(number, 0, epoch, int(at))
        raise Recovering()

    async def draw_message(
        self, application_id: int, chat_number: int, claim: Claim | None = None
    ) -> Drawn:
        return await self._drawn(application_id, chat_number, None, claim)

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> Drawn:
        return await self._drawn(application_id, chat_number, number)

    async def _drawn(
        self,
        application_id: int,
        chat_number: int,
        update: int | None,
        claim: Claim | None = None,
    ) -> Drawn:
        app = self._app(application_id)
        wanted = "" if update is None else str(update)
        seed_epoch: int | str = ""
        chats_seed: int | str = ""
        messages_seed: int | str = ""
        # Chats unseeded, messages unseeded, drawn; all again if an epoch opened meanwhile.
        for _ in range(7):
            args: list[str | int] = [
                seed_epoch,
                app,
                chat_number,
                wanted,
                chats_seed,
                messages_seed,
                *_claim_args(claim),
            ]
            answer = await self._draw(([self._epoch_of(application_id)], args))
            number, revision, epoch = answer[:3]
            if number == _RECOVERING:
                raise self._recovering(application_id)
            if number == _EPOCH_CHANGED:  # seeds read in an older epoch: read them again
                seed_epoch, chats_seed, messages_seed = "", "", ""
            elif number == _UNSEEDED_CHATS:
                seed_epoch = epoch
                chats_seed = await self._store.max_chat_number(application_id)
            elif number == _UNSEEDED_MESSAGES:
                seed_epoch = epoch
                messages_seed = await self._store.max_message_number(application_id, chat_number)
            elif number == _CLAIM_CONFLICT:
                raise KeyReused()
            elif len(answer) == 5:
                return _replayed(answer)
            elif number == _NO_CHAT and revision == 0:
                raise NotFound(f"chat {chat_number} not found")
            elif number == _NO_CHAT:
                raise NotFound(f"message {update} not found in chat {chat_number}")
            else:
                return Drawn(int(number), int(revision), int(epoch), int(revision))
        raise Recovering()

    async def _draws(self, draws: list[_Draw]) -> list[list[int] | BaseException]:
        return await self._pipelined(_DRAW_MESSAGE, draws)

    async def _pipelined(self, source: str, calls: list[_Draw]) -> list[list[int] | BaseException]:
        """One pipeline of calls of a script, one round trip; loads the script once if the
        server lost it. With `replicas`, the pipeline ends with `WAIT`, on the same
        connection: the calls count only once that many replicas hold them (so a failover
        to one of them keeps every number handed out); if fewer do in time, they fail
        (their numbers are never used: a gap, not a reuse). On Redis Cluster each master's
        share of the pipeline ends with a `WAIT` of its own, on its connection."""
        script = self._scripts[source]
        # The master each call goes to, as the slot map says before sending (cluster).
        masters = self._masters(calls) if self._replicas and self._cluster else []
        for attempt in range(2):

            async def send() -> list[object]:
                async with self._redis.pipeline(transaction=False) as pipe:
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

            results = await self._guarded(send())
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                await self._guarded(self._redis.script_load(source))
                continue
            break
        answers: list[object] = results[: len(calls)]
        if self._replicas:
            unreplicated = Unavailable(
                f"numbering (Redis) could not reach {self._replicas} replica(s) in "
                f"{self._replicas_timeout_ms} ms (REDIS_WAIT_REPLICAS); retry shortly"
            )
            held = results[len(calls) :]
            if not masters:
                if not isinstance(held[0], int) or held[0] < self._replicas:
                    return [unreplicated] * len(calls)
            else:
                names = list({node.name: node for node in masters})
                replicated = {
                    name
                    for name, count in zip(names, held, strict=True)
                    if isinstance(count, int) and count >= self._replicas
                }
                # A call redirected to another master (its slot moved meanwhile) ran on
                # another connection than its WAIT: not known to be replicated.
                now = self._masters(calls)
                answers = [
                    answer
                    if before.name in replicated and after.name == before.name
                    else unreplicated
                    for answer, before, after in zip(answers, masters, now, strict=True)
                ]
        return [
            Unavailable(f"numbering failed: {r}") if isinstance(r, BaseException) else r  # type: ignore[misc]
            for r in answers
        ]

    def _masters(self, calls: list[_Draw]) -> list[Any]:
        """The cluster master each call's key belongs to, by the client's slot map."""
        cluster = cast(RedisCluster, self._redis)
        return [cluster.get_node_from_key(keys[0]) for keys, _ in calls]

    async def _run(self, source: str, application_id: int, args: list[Any]) -> list[int]:
        result: list[int]
        keys = [self._epoch_of(application_id)]
        if source == _DRAW_CHAT and self._replicas:
            (answer,) = await self._pipelined(source, [(keys, args)])
            if isinstance(answer, BaseException):
                raise answer
            result = answer
        else:
            result = await self._guarded(self._scripts[source](keys=keys, args=args))
        if result[0] == _RECOVERING:
            raise self._recovering(application_id)
        return result

    async def _guarded(self, call: Awaitable[T]) -> T:
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
        except (RedisConnectionError, TimeoutError) as error:
            raise Unavailable("numbering (Redis) is unavailable; retry shortly") from error
        except RedisError as error:
            raise Unavailable(f"numbering failed: {error}") from error

    # -- what else the API needs from Redis ------------------------------------------------------

    async def still_open(self, application_id: int, epoch: int) -> bool:
        """Whether `epoch` is still the application's open epoch (checked after the broker
        confirmed a write drawn in it: only then is the write acknowledged)."""
        return await self._open((application_id, epoch))

    async def reopened(self, application_id: int, within: float) -> bool:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            epoch = await self._guarded(self._redis.get(self._epoch_of(application_id)))
            if isinstance(epoch, bytes) and epoch.isdigit():
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            self._recovering(application_id)
            await asyncio.sleep(0.1)

    async def _epochs_open(self, asked: list[tuple[int, int]]) -> list[bool]:
        """One read of the global epoch, or on Redis Cluster one pipeline of each asked
        application's."""
        if not self._cluster:
            current = await self._guarded(self._redis.get(self._epoch_key))
            return [current == str(epoch).encode() for _, epoch in asked]
        apps = sorted({app_id for app_id, _ in asked})

        async def read() -> list[object]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for app_id in apps:
                    pipe.get(self._epoch_of(app_id))
                return await pipe.execute()

        epochs = dict(zip(apps, await self._guarded(read()), strict=True))
        return [epochs[app_id] == str(epoch).encode() for app_id, epoch in asked]

    async def register_application(self, application_id: int, token: str) -> None:
        """A new application: its chats counter starts at 0, its token is known to every API
        process (so creates need neither the store nor a warm cache). On Redis Cluster its
        epoch opens too: the store's global one (nothing of it can be queued)."""
        opened = (await self._store.numbering()).epoch if self._cluster else ""
        await self._guarded(
            self._scripts[_NEW_APPLICATION](
                keys=[self._epoch_of(application_id)], args=[self._app(application_id), opened]
            )
        )
        await self.remember_token(token, application_id)

    async def remember_token(self, token: str, application_id: int) -> None:
        await self._guarded(self._redis.set(f"{self._prefix}:token:{token}", application_id))

    async def application_id(self, token: str) -> int | None:
        found = await self._guarded(self._redis.get(f"{self._prefix}:token:{token}"))
        return None if found is None else int(found)

    # -- recovery ------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Recover now, returning once an epoch is open (on Redis Cluster: once every
        application found lost so far is open again)."""
        if isinstance(self._recovery, ApplicationRecovery):
            await self._recovery.finished()
        else:
            await self._recovery.run()

    async def drop(self) -> None:
        """Delete every key under the prefix (tests)."""
        async for key in self._redis.scan_iter(match=f"{self._prefix}:*", count=1000):
            await self._redis.delete(key)


def _claim_args(claim: Claim | None) -> list[str | int]:
    return ["", "", ""] if claim is None else [claim.key, claim.fingerprint, claim.window]


def _replayed(answer: list[int]) -> Drawn:
    """The draw that claimed the key, as the script answered it."""
    number, revision, epoch, at, replayed = (int(value) for value in answer)
    return Drawn(number, revision, epoch, at, replayed=True, durable=replayed == 2)


class _InBackground:
    """A recovery's run as one background task per process: started when asked for (again
    once it ended), cancelled with the numbers."""

    _task: asyncio.Task[None] | None = None

    async def run(self, poll: float = 0.1) -> None:
        raise NotImplementedError

    def _launch(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="numbering-recovery")

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class Recovery(_InBackground):
    """Opens the next numbering epoch once every write of the lost one is stored."""

    def __init__(
        self, numbers: RedisNumbers, store: Store, drained: Callable[[], Awaitable[bool]]
    ) -> None:
        self._numbers = numbers
        self._redis = numbers._redis
        self._key = numbers._epoch_key
        self._claimed = numbers._scripts[_CLAIMED]
        self._forget = numbers._scripts[_FORGET]
        self._store = store
        self._drained = drained
        self.status = "checking"

    def start(self) -> None:
        self._launch()

    async def settled(self, within: float) -> None:
        """Return when the recovery is done, or after `within` seconds (it goes on)."""
        if self._task is not None:
            await asyncio.wait([self._task], timeout=within)

    async def run(self, poll: float = 0.1) -> None:
        claim = f"recovering:{secrets.token_hex(8)}"
        token: int | None = None
        while True:
            try:
                current: bytes | None = await self._redis.get(self._key)  # type: ignore[assignment]
                if current is not None and current.isdigit():
                    self.status = "open"
                    return
                if current is None:  # nobody recovering (or a claim expired): claim it
                    if await self._redis.set(self._key, claim, nx=True, px=_CLAIM_LEASE_MS):
                        log.warning("numbering: Redis has no epoch; recovering (claim %s)", claim)
                        token = None  # a fencing token taken after this claim, not before
                        continue
                elif not current.startswith(b"recovering:"):  # an older release's epoch
                    await self._forget(keys=[self._key], args=[current])
                    continue
                elif current == claim.encode():
                    if token is None:
                        token = await self._store.claim_recovery()
                    if await self._step(claim, token):
                        return
                else:
                    self.status = "another process is recovering numbering"
            except (RedisError, Unavailable) as error:
                self.status = f"waiting: {getattr(error, 'message', error)}"
                log.warning("numbering recovery waiting: %s", self.status)
            await asyncio.sleep(poll)

    async def _step(self, claim: str, token: int) -> bool:
        """One try under a live claim: True once the next epoch is open and published."""
        if not await self._claimed(keys=[self._key], args=[claim, _CLAIM_LEASE_MS, ""]):
            return False
        state = await self._store.numbering()
        # Epoch 0 never reached Redis: no number was ever handed out, nothing can be queued.
        if state.epoch > 0 and not await self._drained():
            self.status = (
                "waiting until every queued write is stored (the write queue must be empty, "
                "with no worker holding a delivery)"
            )
            return False
        if not await self._store.open_epoch(state.epoch, token):
            self.status = "another recovery advanced the epoch; trying again"
            return False
        await _restore_claims(self._numbers, self._store)
        opened = state.epoch + 1
        if await self._claimed(keys=[self._key], args=[claim, _CLAIM_LEASE_MS, opened]):
            self.status = "open"
            log.warning("numbering recovered: epoch %d is open", opened)
            return True
        return False


async def _restore_claims(
    numbers: RedisNumbers, store: Store, applications: set[int] | None = None
) -> None:
    """Every idempotency key claimed by a stored write (all acknowledged ones: the queue is
    drained), of the `applications` (None: all), back in Redis before numbering opens,
    marked stored: a retry gets its draw back without submitting it again. A claim Redis
    still holds is kept."""
    restored = 0
    now = time.time_ns() // 1000
    ids = None if applications is None else sorted(applications)
    async for batch in store.iter_claims(1000, ids):
        async with numbers._redis.pipeline(transaction=False) as pipe:
            for c in batch:
                value = f"{c.fingerprint} {c.number} {c.revision} {c.epoch} {c.at} 1"
                ttl = max((c.expires - now) // 1000, 1)
                pipe.set(f"{numbers._app(c.application_id)}:k:{c.key}", value, px=ttl, nx=True)
            await pipe.execute()
        restored += len(batch)
    if restored:
        log.warning("numbering recovery: %d idempotency keys restored from the store", restored)


class ApplicationRecovery(_InBackground):
    """On Redis Cluster: opens the next epoch of each application whose numbering a shard
    lost, once every write of its lost epoch is stored, while the other applications draw.

    The drain cannot wait for the write queue to be empty, as the global recovery does: the
    other applications keep writing. So it steers new writes to the other write queue
    (`route`: `numbering.generation` advanced, one binding at the broker) and waits until
    the queue it left is drained (`drained(generation)`: nothing ready, no consumer). Every
    acknowledged write of a lost epoch was confirmed before the loss (`still_open`), so
    before this recovery began, so before the steer: it is in the queue left, or in the
    other one, which must have been drained before the steer too. Then the applications'
    epochs are retired in the store (fenced by the recovery's token) and the next ones
    published where each application's claim still holds.

    One recovery runs at a time across processes (a lease in Redis, for liveness; the
    store's fencing token is what makes it safe); applications lost meanwhile wait for
    the next round.
    """

    def __init__(
        self,
        numbers: RedisNumbers,
        store: Store,
        drained: Callable[[int], Awaitable[bool]],
        route: Callable[[int], Awaitable[None]],
    ) -> None:
        self._numbers = numbers
        self._redis = numbers._redis
        self._claimed = numbers._scripts[_CLAIMED]
        self._store = store
        self._drained = drained
        self._route = route
        self._lease_key = f"{numbers._prefix}:recovery"
        self._wanted: set[int] = set()
        self.status = "open"

    def request(self, application_id: int) -> None:
        self._wanted.add(application_id)
        self.start()

    def start(self) -> None:
        if self._wanted:
            self._launch()

    async def finished(self) -> None:
        """Return once every application asked for is open again."""
        self.start()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def run(self, poll: float = 0.1) -> None:
        claim = f"recovering:{secrets.token_hex(8)}"
        try:
            while self._wanted:
                try:
                    if await self._round(claim, poll):
                        continue
                except (RedisError, Unavailable) as error:
                    self.status = f"waiting: {getattr(error, 'message', error)}"
                    log.warning("numbering recovery waiting: %s", self.status)
                await asyncio.sleep(poll)
            self.status = "open"
        finally:
            with suppress(RedisError, Unavailable):
                await self._release(claim)

    async def _round(self, claim: str, poll: float) -> bool:
        """One try: True once the applications claimed are open again."""
        apps = sorted(self._wanted)
        held = await self._each(
            _CLAIM_APPLICATION,
            [(self._numbers._epoch_of(a), [claim, _CLAIM_LEASE_MS]) for a in apps],
        )
        mine = []
        for app_id, answer in zip(apps, held, strict=True):
            if answer == 0:  # open again (another process recovered it)
                self._wanted.discard(app_id)
            elif answer == 1:
                mine.append(app_id)
        if not mine:
            self.status = "another process is recovering numbering"
            return False
        if not await self._lease(claim):
            self.status = "waiting for another process's numbering recovery"
            return False
        log.warning("numbering: Redis lost applications %s; recovering (claim %s)", mine, claim)
        token = await self._store.claim_recovery(pause=False)
        generation = (await self._store.numbering()).generation

        async def steered() -> bool:  # the queue about to take new writes holds nothing
            await self._route(generation)
            return await self._drained(generation + 1)

        async def left() -> bool:  # the queue writes were steered from holds nothing
            await self._route(generation + 1)  # again: a late process may have undone it
            return await self._drained(generation)

        self.status = "waiting until the write queue of the lost epochs is drained"
        if not await self._until(steered, mine, claim, poll):
            return False
        if not await self._store.advance_generation(generation, token):
            return False
        if not await self._until(left, mine, claim, poll):
            return False
        opened = await self._store.open_application_epochs(mine, token)
        if opened is None:
            return False
        for gone in set(mine) - opened.keys():  # no such application: nothing to recover
            self._wanted.discard(gone)
        await _restore_claims(self._numbers, self._store, set(opened))
        published = await self._each(
            _CLAIMED,
            [
                (self._numbers._epoch_of(a), [claim, _CLAIM_LEASE_MS, epoch])
                for a, epoch in opened.items()
            ],
        )
        for (app_id, epoch), done in zip(opened.items(), published, strict=True):
            if done:
                self._wanted.discard(app_id)
                log.warning(
                    "numbering recovered: application %d is open in epoch %d", app_id, epoch
                )
        await self._release(claim)
        return True

    async def _until(
        self, done: Callable[[], Awaitable[bool]], apps: list[int], claim: str, poll: float
    ) -> bool:
        """Wait for `done`, holding the claims and the lease meanwhile; False once one of
        them is lost (a shard lost again, or a stall past the lease)."""
        while True:
            renewed = await self._each(
                _CLAIMED, [(self._numbers._epoch_of(a), [claim, _CLAIM_LEASE_MS, ""]) for a in apps]
            )
            if not all(renewed) or not await self._lease(claim):
                return False
            if await done():
                return True
            await asyncio.sleep(poll)

    async def _lease(self, claim: str) -> bool:
        """Take or renew the one-recovery-at-a-time lease."""
        if await self._redis.set(self._lease_key, claim, nx=True, px=_CLAIM_LEASE_MS):
            return True
        return bool(await self._claimed(keys=[self._lease_key], args=[claim, _CLAIM_LEASE_MS, ""]))

    async def _release(self, claim: str) -> None:
        await self._numbers._scripts[_FORGET](keys=[self._lease_key], args=[claim])

    async def _each(self, source: str, calls: list[tuple[str, list[Any]]]) -> list[int]:
        """Calls of a single-key script, one pipeline (a round trip per node)."""
        answers = await self._numbers._pipelined(source, [([key], args) for key, args in calls])
        counted: list[int] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            counted.append(int(answer))  # type: ignore[call-overload]  # a script's integer
        return counted
