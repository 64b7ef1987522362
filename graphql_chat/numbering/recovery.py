"""The numbering recovery: when Redis lost an epoch, open the next once every write of the
lost one is stored; and the numbers port as the service sees it, starting a recovery whenever
a draw finds its epoch lost.

One recovery runs at a time across processes (a lease in the registry, for liveness; the
store's fencing token is what makes it safe). A round:

1. hold each lost epoch in the registry (a lease that expires), and take the one-at-a-time
   lease;
2. take a fencing token from the ledger;
3. wait until no write of the lost epochs can still be queued, renewing the holds meanwhile
   (the topology's drain, below);
4. retire the lost epochs in the ledger with that token (from that commit on, workers set
   their draws aside);
5. put the stored idempotency claims back in the registry;
6. publish the next epochs where the holds are still there.

Why no number is handed out twice (the argument in full is in the README): an API process
acknowledges a write only if, after the broker confirmed it, the registry still shows the
epoch it was drawn in (`Numbers.still_open`); so every acknowledged write of a lost epoch was
queued before the epoch vanished, before the hold, before the drain; the drain ends when
every such write is stored; from the retirement on, the epoch's counters are never used
again, and the next epoch seeds from a store that holds every number the lost one will ever
have.

The topology decides what is lost and how the drain is seen:

- `GlobalEpoch` (one Redis server, or Sentinel's master): one epoch for every application;
  the drain waits until the write queues are empty with no consumer holding a delivery
  (idle workers stop consuming while the ledger says numbering recovers).
- `EpochPerApplication` (Redis Cluster): a shard loses only its applications' epochs, and the
  others keep writing, so the queues are never seen empty. New writes are steered to the
  other write queue (the ledger's generation advanced, `WriteQueues.route`), and the queue
  they left is waited for: every acknowledged write of a lost epoch was confirmed before the
  loss, so before the steer, so it is in the queue left, or in the other one, which was
  drained before the steer too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from typing import Protocol

from graphql_chat.domain import Claim
from graphql_chat.errors import Recovering, Unavailable
from graphql_chat.numbering.ports import Held, Ledger, Registry, Scope, WriteQueues
from graphql_chat.ports import Drawn, Numbers

log = logging.getLogger(__name__)

_POLL = 0.1  # seconds between two looks at what a recovery waits for
_RESTORE_BATCH = 1000  # stored idempotency claims put back per round trip


class Topology(Protocol):
    """What differs between one global epoch and an epoch per application."""

    pauses: bool  # whether idle workers stop consuming while it recovers

    def scope(self, application_id: int) -> Scope: ...

    def watched(self) -> list[Scope]:
        """The epochs whose loss a health check finds out (the others: when drawn in)."""

    async def start(self, ledger: Ledger) -> None:
        """What a new deployment opens before the first draw."""

    async def retire(
        self, recovery: Recovery, lost: list[Scope], holder: str, token: int
    ) -> dict[Scope, int] | None:
        """Drain, then retire the `lost` epochs in the ledger: the epochs opened by scope
        (None: nothing changed, try again)."""

    def applications(self, opened: Sequence[Scope]) -> list[int] | None:
        """The applications whose stored claims go back (None: every one)."""


class GlobalEpoch:
    pauses = True

    def scope(self, application_id: int) -> Scope:
        return None

    def watched(self) -> list[Scope]:
        return [None]

    async def start(self, ledger: Ledger) -> None:
        """Nothing: the recovery run at start opens a new deployment's first epoch."""

    async def retire(
        self, recovery: Recovery, lost: list[Scope], holder: str, token: int
    ) -> dict[Scope, int] | None:
        ledger, queues = recovery.ledger, recovery.queues
        # Epoch 0 never reached Redis: no number was ever handed out, nothing can be queued.
        if (await ledger.numbering()).epoch > 0:
            recovery.status = (
                "waiting until every queued write is stored (the write queue must be empty, "
                "with no worker holding a delivery)"
            )
            if not await recovery.holding(lost, holder, queues.drained):
                return None
        state = await ledger.numbering()
        if not await ledger.open_epoch(state.epoch, token):
            recovery.status = "another recovery advanced the epoch; trying again"
            return None
        return {None: state.epoch + 1}

    def applications(self, opened: Sequence[Scope]) -> list[int] | None:
        return None


class EpochPerApplication:
    pauses = False

    def scope(self, application_id: int) -> Scope:
        return application_id

    def watched(self) -> list[Scope]:
        return []

    async def start(self, ledger: Ledger) -> None:
        """The store's global epoch is the one new applications start in: open it first."""
        if (await ledger.numbering()).epoch == 0:  # no draw can be of epoch 0
            await ledger.open_epoch(0, await ledger.fencing_token(pause=False))

    async def retire(
        self, recovery: Recovery, lost: list[Scope], holder: str, token: int
    ) -> dict[Scope, int] | None:
        ledger, queues = recovery.ledger, recovery.queues
        generation = (await ledger.numbering()).generation

        async def steered() -> bool:  # the queue about to take new writes holds nothing
            await queues.route(generation)
            return await queues.drained(generation + 1)

        async def left() -> bool:  # the queue writes were steered from holds nothing
            await queues.route(generation + 1)  # again: a late process may have undone it
            return await queues.drained(generation)

        recovery.status = "waiting until the write queue of the lost epochs is drained"
        if not await recovery.holding(lost, holder, steered):
            return None
        if not await ledger.advance_generation(generation, token):
            return None
        if not await recovery.holding(lost, holder, left):
            return None
        ids = [scope for scope in lost if scope is not None]
        opened = await ledger.open_application_epochs(ids, token)
        if opened is None:
            return None
        for gone in set(ids) - opened.keys():  # no such application: nothing to recover
            recovery.forget(gone)
        return {scope: epoch for scope, epoch in opened.items()}

    def applications(self, opened: Sequence[Scope]) -> list[int] | None:
        return [scope for scope in opened if scope is not None]


class Recovery:
    """Recovers lost epochs in the background, one round at a time, until none is wanted."""

    def __init__(
        self, topology: Topology, ledger: Ledger, queues: WriteQueues, registry: Registry
    ) -> None:
        self.topology = topology
        self.ledger = ledger
        self.queues = queues
        self.registry = registry
        self.status = "open"
        self._wanted: set[Scope] = set()
        self._task: asyncio.Task[None] | None = None

    def request(self, scope: Scope) -> None:
        """Recover `scope`'s epoch, if it is lost (joining the run under way, if any)."""
        self._wanted.add(scope)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="numbering-recovery")

    def forget(self, scope: Scope) -> None:
        self._wanted.discard(scope)

    async def settled(self, within: float | None = None) -> None:
        """Return when every epoch asked for is open, or after `within` seconds (it goes on)."""
        if self._task is not None:
            await asyncio.wait([self._task], timeout=within)

    async def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        holder = f"recovering:{secrets.token_hex(8)}"
        try:
            while self._wanted:
                try:
                    if await self._round(holder):
                        continue
                except Unavailable as error:
                    self.status = f"waiting: {error.message}"
                    log.warning("numbering recovery waiting: %s", self.status)
                await asyncio.sleep(_POLL)
            self.status = "open"
        finally:
            with suppress(Unavailable):
                await self.registry.release(holder)

    async def _round(self, holder: str) -> bool:
        """One try: True once the epochs held are open again."""
        scopes = sorted(self._wanted, key=lambda scope: -1 if scope is None else scope)
        held = await self.registry.hold(scopes, holder)
        lost = []
        for scope, state in zip(scopes, held, strict=True):
            if state is Held.OPEN:  # open (never lost, or another process recovered it)
                self._wanted.discard(scope)
            elif state is Held.MINE:
                lost.append(scope)
        if not lost:
            if self._wanted:
                self.status = "another process is recovering numbering"
            return False
        if not await self.registry.lease(holder):
            self.status = "waiting for another process's numbering recovery"
            return False
        log.warning("numbering: Redis lost epochs %s; recovering (as %s)", lost, holder)
        token = await self.ledger.fencing_token(pause=self.topology.pauses)
        opened = await self.topology.retire(self, lost, holder, token)
        if opened is None:
            return False
        await self._restore_claims(self.topology.applications(list(opened)))
        published = await self.registry.publish(opened, holder)
        for scope, done in published.items():
            if done:
                self._wanted.discard(scope)
                what = "every application" if scope is None else f"application {scope}"
                log.warning("numbering recovered: %s is open in epoch %d", what, opened[scope])
        await self.registry.release(holder)
        return True

    async def holding(
        self, scopes: Sequence[Scope], holder: str, done: Callable[[], Awaitable[bool]]
    ) -> bool:
        """Wait for `done`, renewing the holds and the lease meanwhile; False once one of
        them is lost (a shard lost again, or a stall past the lease)."""
        while True:
            if not await self.registry.renew(scopes, holder):
                return False
            if await done():
                return True
            await asyncio.sleep(_POLL)

    async def _restore_claims(self, applications: list[int] | None) -> None:
        """Every idempotency key claimed by a stored write (all acknowledged ones: the queue
        is drained) back in the registry before numbering opens: a retry gets its draw back
        without submitting it again."""
        restored = 0
        async for batch in self.ledger.iter_claims(_RESTORE_BATCH, applications):
            await self.registry.restore(batch)
            restored += len(batch)
        if restored:
            log.warning("numbering recovery: %d idempotency keys restored", restored)


class RecoveringNumbers:
    """The numbers port over draws that can find their epoch lost: each such draw (and each
    health check that finds the global epoch lost) starts a recovery."""

    def __init__(self, draws: RegisteringNumbers, recovery: Recovery) -> None:
        self._draws = draws
        self.recovery = recovery
        self._topology = recovery.topology

    async def start(self) -> None:
        """Ready to draw: open numbering if it is new, at once; a recovery that must wait
        for the queue goes on in the background (draws answer `Recovering`)."""
        await self._draws.start()
        await self._topology.start(self.recovery.ledger)
        for scope in self._topology.watched():
            self.recovery.request(scope)
        await self.recovery.settled(within=2.0)

    async def close(self) -> None:
        await self.recovery.cancel()
        await self._draws.close()

    async def ping(self) -> None:
        """The epochs a health check watches are open (reading them is the draws' engine
        answering), or with none watched, the draws' engine answers."""
        watched = self._topology.watched()
        if not watched:
            await self._draws.ping()
        for scope in watched:
            if not await self.recovery.registry.is_open(scope):
                self.recovery.request(scope)
                raise Recovering(self.recovery.status)

    async def _recovering(self, application_id: int, call: Awaitable[Drawn]) -> Drawn:
        try:
            return await call
        except Recovering:
            self.recovery.request(self._topology.scope(application_id))
            raise

    async def next_chat(self, application_id: int, claim: Claim | None = None) -> Drawn:
        return await self._recovering(application_id, self._draws.next_chat(application_id, claim))

    async def draw_message(
        self, application_id: int, chat_number: int, claim: Claim | None = None
    ) -> Drawn:
        drawn = self._draws.draw_message(application_id, chat_number, claim)
        return await self._recovering(application_id, drawn)

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> Drawn:
        drawn = self._draws.revise_message(application_id, chat_number, number)
        return await self._recovering(application_id, drawn)

    async def still_open(self, application_id: int, epoch: int) -> bool:
        return await self._draws.still_open(application_id, epoch)

    async def reopened(self, application_id: int, within: float) -> bool:
        scope = self._topology.scope(application_id)
        deadline = asyncio.get_running_loop().time() + within
        while True:
            if await self.recovery.registry.is_open(scope):
                return True
            if asyncio.get_running_loop().time() > deadline:
                return False
            self.recovery.request(scope)
            await asyncio.sleep(_POLL)

    async def register_application(self, application_id: int, token: str) -> None:
        """On an epoch per application, a new one's opens at the store's global epoch
        (nothing of it can be queued)."""
        epoch = None
        if self._topology.scope(application_id) is not None:
            epoch = (await self.recovery.ledger.numbering()).epoch
        await self._draws.register_application(application_id, token, epoch)

    async def application_id(self, token: str) -> int | None:
        return await self._draws.application_id(token)

    async def remember_token(self, token: str, application_id: int) -> None:
        await self._draws.remember_token(token, application_id)


class RegisteringNumbers(Numbers, Protocol):
    """Draws whose new applications can be opened in a given epoch."""

    async def register_application(
        self, application_id: int, token: str, epoch: int | None = None
    ) -> None: ...
