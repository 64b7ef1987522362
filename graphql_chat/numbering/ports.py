"""The ports numbering's recovery drives, and the values that cross them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from graphql_chat.ports import Claimed

Scope = int | None
"""An epoch's scope: the one global epoch (None), or an application's own (Redis Cluster)."""


@dataclass(frozen=True, slots=True)
class NumberingRecord:
    """The store's record of numbering: the epoch whose draws it accepts, whether a recovery is
    waiting for the write queue to drain, how many writes were set aside so far, and the
    generation of the write queues (see `WriteQueues.route`)."""

    epoch: int
    recovering: bool
    set_aside: int
    generation: int = 0  # which write queue takes new writes: the generation's parity


class Ledger(Protocol):
    """The store's side of numbering: the epochs it accepts draws of, fenced by recoveries'
    tokens, and the idempotency claims it keeps with writes."""

    async def numbering(self) -> NumberingRecord: ...

    async def fencing_token(self, pause: bool = True) -> int:
        """A fencing token larger than any before; with `pause`, numbering is marked
        recovering (idle workers stop consuming, so the write queues can drain)."""

    async def open_epoch(self, previous: int, token: int) -> bool:
        """Retire epoch `previous` and open the next, if `token` is still the latest fencing token;
        from this commit on, draws of `previous` are set aside. False: nothing changed."""

    async def advance_generation(self, previous: int, token: int) -> bool:
        """Make generation `previous + 1` current, if `token` is still the latest fencing token."""

    async def open_application_epochs(
        self, application_ids: Sequence[int], token: int
    ) -> dict[int, int] | None:
        """Retire each application's open epoch (the larger of its own and the global one)
        and open the next, if `token` is still the latest fencing token: the new epochs."""

    def iter_claims(
        self, batch_size: int, application_ids: Sequence[int] | None = None
    ) -> AsyncIterator[list[Claimed]]:
        """Every claim not expired (of `application_ids`, when given), `batch_size` at a
        time."""


class WriteQueues(Protocol):
    """Where accepted writes wait for the workers, as a recovery needs to see them."""

    async def drained(self, generation: int | None = None) -> bool:
        """True when every accepted write has reached the store (nothing queued or in
        flight); with `generation`, every write accepted while it was routed to."""

    async def route(self, generation: int) -> None:
        """Accept new writes in `generation` from now on: where they queue is not where
        those of the generation before did, so that those can be seen drained under load.
        Idempotent."""


class Held(Enum):
    """An epoch key as a recovery found it when it tried to hold it."""

    OPEN = 0  # an epoch is open: nothing to recover
    MINE = 1  # this recovery holds it (now)
    OTHER = -1  # another recovery holds it


class Registry(Protocol):
    """The epochs as the drawing side keeps them (Redis): open, or lost and held by a
    recovery for a lease, until it publishes the next."""

    async def is_open(self, scope: Scope) -> bool: ...

    async def hold(self, scopes: Sequence[Scope], holder: str) -> list[Held]:
        """Hold each lost epoch for the recovery `holder`, for a lease."""

    async def renew(self, scopes: Sequence[Scope], holder: str) -> bool:
        """Renew the holds and the lease; False once any of them is lost."""

    async def publish(self, epochs: Mapping[Scope, int], holder: str) -> dict[Scope, bool]:
        """Open each epoch where `holder` still holds its scope."""

    async def lease(self, holder: str) -> bool:
        """Take or renew the lease of the one recovery running at a time."""

    async def release(self, holder: str) -> None: ...

    async def restore(self, claims: Sequence[Claimed]) -> None:
        """Idempotency claims stored with their writes, back where draws find them (marked
        stored; a claim still there is kept)."""


class Reopening(Protocol):
    """What a write overtaken by a numbering reset waits on to learn its fate."""

    async def reopened(self, application_id: int, within: float) -> bool:
        """Wait up to `within` seconds for the application's numbering to be open (after a
        recovery)."""
