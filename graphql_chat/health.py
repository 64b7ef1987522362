"""Readiness: each dependency's state as a value, checked in shared rounds, and the gauges
kept from it.

The checks run at once, each for at most `HEALTH_TIMEOUT` seconds, in rounds: one at a time,
each beginning at least `HEALTH_SPACING` seconds after the last began. A caller gets the next
round to begin, shared with everyone who asks before it does, so its answer is never older
than its question; and however many clients ask (`/health` is public), a process checks each
dependency at most 1 / `HEALTH_SPACING` times a second, and holds at most one check of it at
a time however slowly it answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from graphql_chat import metrics
from graphql_chat.errors import Recovering, Unavailable

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 5.0  # seconds a dependency's check may take before it counts as down
HEALTH_SPACING = 0.1  # seconds at least between the beginnings of two rounds of checks
HEALTH_EVERY = 5.0  # seconds between two checks for the dependency gauges


class Pinged(Protocol):
    async def ping(self) -> None:
        """Raises `Unavailable` unless the dependency can serve now."""


@dataclass(frozen=True, slots=True)
class State:
    """One dependency as a round found it: what to tell an operator (`ok`, or what is
    wrong), and whether it is numbering recovering after a Redis data loss."""

    text: str
    recovering: bool = False

    @property
    def ok(self) -> bool:
        return self.text == "ok"


Report = dict[str, State]


class Readiness:
    """The dependencies' checks, run in shared, spaced rounds (see the module's text)."""

    def __init__(self, dependencies: Mapping[str, Pinged]) -> None:
        self._dependencies = dict(dependencies)
        self._running: asyncio.Future[Report] | None = None
        self._next: asyncio.Future[Report] | None = None
        self._began = float("-inf")  # when the last round began

    async def report(self) -> Report:
        if self._next is None:
            self._next = asyncio.ensure_future(self._round(self._running))
        # Shielded: a caller that goes away does not cancel the round the others wait for.
        return dict(await asyncio.shield(self._next))

    async def _round(self, previous: asyncio.Future[Report] | None) -> Report:
        loop = asyncio.get_running_loop()
        if previous is not None:
            await asyncio.wait([previous])
        if (wait := self._began + HEALTH_SPACING - loop.time()) > 0:
            await asyncio.sleep(wait)
        # From here on, whoever asks waits for the round after this one.
        self._running, self._next, self._began = self._next, None, loop.time()
        states = await asyncio.gather(*(_state(d) for d in self._dependencies.values()))
        return dict(zip(self._dependencies, states, strict=True))


async def _state(dependency: Pinged) -> State:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await dependency.ping()  # looked up now: a dependency may be replaced (tests)
    except Recovering as error:
        return State(error.message, recovering=True)
    except Unavailable as error:
        return State(error.message)
    except TimeoutError:
        return State("timed out")
    return State("ok")


def observe(report: Mapping[str, State]) -> None:
    """The dependency gauges and the recovery state from a report."""
    for dependency, state in report.items():
        metrics.DEPENDENCY_UP.labels(dependency).set(1 if state.ok else 0)
    metrics.RECOVERING.set(1 if any(state.recovering for state in report.values()) else 0)


async def watch(check: Callable[[], Awaitable[Report]], every: float = HEALTH_EVERY) -> None:
    """Keep the dependency gauges and the recovery state current, from a check every `every`
    seconds, for as long as the process runs (API processes and workers alike). A scrape
    only reads them: it never waits for a dependency, nor makes one be checked."""
    while True:
        try:
            observe(await check())
        except Exception:  # the gauges keep their last values; the next round tries again
            log.exception("health check for the metrics failed")
        await asyncio.sleep(every)
