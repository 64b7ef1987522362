"""The one way the product tries something again: exponential backoff (tenacity), for as long
as a deadline or a stop allows, then the last error.

    async for attempt in retrying(Unavailable, first=0.1, last=5.0, until=stopping):
        with attempt:
            return await store.apply(events)

A wait ends early when `until` is set, and no try begins after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import suppress

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    wait_exponential,
)
from tenacity.stop import stop_base

Errors = type[BaseException] | tuple[type[BaseException], ...]


class _Set(stop_base):
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._event.is_set()


def retrying(
    errors: Errors,
    first: float,
    last: float,
    within: float | None = None,
    until: asyncio.Event | None = None,
    waiting: Callable[[BaseException, float], None] | None = None,
) -> AsyncRetrying:
    """Tries while they raise `errors`, waiting `first` seconds after the first, twice as long
    after each next (at most `last`); after `within` seconds, or once `until` is set, the last
    error is raised. `waiting(error, seconds)` hears of each wait (to log it)."""
    stop: stop_base = stop_never if within is None else stop_after_delay(within)
    if until is not None:
        stop = stop | _Set(until)

    async def sleep(seconds: float) -> None:
        if until is None:
            await asyncio.sleep(seconds)
            return
        with suppress(TimeoutError):  # a stop ends the wait
            async with asyncio.timeout(seconds):
                await until.wait()

    def before_sleep(state: RetryCallState) -> None:
        if waiting is not None and state.outcome is not None and state.next_action is not None:
            error = state.outcome.exception()
            if error is not None:
                waiting(error, state.next_action.sleep)

    return AsyncRetrying(
        retry=retry_if_exception_type(errors),
        wait=wait_exponential(multiplier=first, min=first, max=last),
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def logged(log: logging.Logger, what: str) -> Callable[[BaseException, float], None]:
    """A `waiting` that logs each wait as a warning: `what`, the error, the seconds."""

    def waiting(error: BaseException, seconds: float) -> None:
        log.warning("%s; trying again in %.1fs: %s", what, seconds, error)

    return waiting
