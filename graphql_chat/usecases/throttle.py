"""Rate limits, so that one client cannot exhaust the service: per client address for what
needs no credential (creating applications), per application token, and per user of an
application (writes and reads apart). Counted with the `limits` library (a fixed window per
policy and caller: a hit costs 8 µs of CPU in memory, a sliding window counter's 19 µs) in
the storage the composition root gives: memory embedded, Redis distributed (the limit then
holds across API processes).

A limit that cannot be counted (Redis unreachable) lets the request through, with a
warning: the rate limiter is a guard, not a dependency every read would share."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from limits import RateLimitItem, parse_many
from limits.aio.strategies import FixedWindowRateLimiter
from limits.errors import StorageError

from graphql_chat.config import Settings
from graphql_chat.domain import User
from graphql_chat.errors import RateLimited
from graphql_chat.ports import RateCounters

log = logging.getLogger(__name__)

Policy = Literal["anonymous", "application", "user_writes", "user_reads"]
_POLICIES: tuple[Policy, ...] = ("anonymous", "application", "user_writes", "user_reads")
_WARN_EVERY = 10.0  # seconds between warnings that limits cannot be counted


class Throttle:
    def __init__(self, settings: Settings, counters: Callable[[], RateCounters]) -> None:
        """`counters`: makes the storage, on the first hit (the memory storage needs the
        running event loop)."""
        self._counters = counters
        self._close: Callable[[], Awaitable[None]] | None = None
        self._limiter: FixedWindowRateLimiter | None = None
        self._limits: dict[Policy, list[RateLimitItem]] = {
            policy: parse_many(text) if (text := getattr(settings, f"rate_limit_{policy}")) else []
            for policy in _POLICIES
        }
        self._warned = 0.0

    def limits(self, policy: Policy) -> list[RateLimitItem]:
        return self._limits[policy]

    async def application(self, application_id: int) -> None:
        """A call made with an application's token (its backend)."""
        await self.hit("application", str(application_id))

    async def user(self, user: User, writes: bool) -> None:
        """A call made with a user token: a write, or a read."""
        policy: Policy = "user_writes" if writes else "user_reads"
        await self.hit(policy, f"{user.application_id}:{user.id}")

    async def anonymous(self, address: str) -> None:
        """A call made with no credential (creating an application), from `address`."""
        await self.hit("anonymous", address)

    async def hit(self, policy: Policy, caller: str) -> None:
        """Count one request of `caller` under `policy`; `RateLimited` when it is over."""
        limits = self._limits[policy]
        if not limits:
            return
        if self._limiter is None:
            storage, self._close = self._counters()
            self._limiter = FixedWindowRateLimiter(storage)
        for item in limits:
            try:
                if await self._limiter.hit(item, policy, caller):
                    continue
                stats = await self._limiter.get_window_stats(item, policy, caller)
            except StorageError as error:
                self._warn(error)
                return
            window = item.get_expiry()
            retry_after = max(1, min(window, math.ceil(stats.reset_time - time.time())))
            raise RateLimited(policy, item.amount, window, retry_after)

    async def close(self) -> None:
        if self._close is not None:
            close, self._close, self._limiter = self._close, None, None
            await close()

    def _warn(self, error: Exception) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("rate limits cannot be counted now (requests let through): %s", error)
