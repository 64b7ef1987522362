"""Rate limits counted where the settings say, on every Redis topology numbering runs on (one
server, a Sentinel-watched master, a Redis Cluster): two API processes' throttles share one
limit; the embedded mode's memory is its own; a Redis that cannot be reached lets requests
through rather than failing them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from graphql_chat.adapters.rate_storage import rate_storage
from graphql_chat.config import Settings
from graphql_chat.errors import RateLimited
from graphql_chat.usecases.throttle import Throttle
from tests.engines import engine_url, unique_name
from tests.redis_group import RedisGroup, redis_group

LIMIT = "5/hour"


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[RedisGroup]:
    with redis_group(tmp_path) as started:
        yield started


async def _allowed(throttles: list[Throttle], calls: int, who: str = "10.0.0.1") -> int:
    allowed = 0
    for i in range(calls):
        try:
            await throttles[i % len(throttles)].anonymous(who)
            allowed += 1
        except RateLimited as refused:
            assert refused.retry_after >= 1 and refused.quota == 5
    return allowed


@pytest.mark.parametrize("topology", ["single", "cluster", "sentinel"])
async def test_two_processes_share_one_limit_on_redis(
    topology: str, request: pytest.FixtureRequest
) -> None:
    if topology == "sentinel":
        url = request.getfixturevalue("sentinel").url
    else:
        url = engine_url("REDIS_CLUSTER_URL" if topology == "cluster" else "REDIS_URL")
    settings = Settings(
        redis_url=url, redis_key_prefix=unique_name("rate"), rate_limit_anonymous=LIMIT
    )
    throttles = [Throttle(settings, lambda: rate_storage(settings)) for _ in range(2)]
    try:
        assert await _allowed(throttles, 12) == 5
        assert await _allowed(throttles, 3, who="10.0.0.2") == 3  # another address: its own
    finally:
        for throttle in throttles:
            await throttle.close()


async def test_the_embedded_memory_counts_for_its_process_alone() -> None:
    settings = Settings(rate_limit_anonymous=LIMIT)
    throttles = [Throttle(settings, lambda: rate_storage(settings)) for _ in range(2)]
    assert await _allowed(throttles[:1], 8) == 5
    assert await _allowed(throttles[1:], 8) == 5


async def test_an_unreachable_redis_lets_requests_through_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(redis_url="redis://127.0.0.1:1/0", rate_limit_anonymous=LIMIT)
    throttle = Throttle(settings, lambda: rate_storage(settings))
    with caplog.at_level(logging.WARNING):
        assert await _allowed([throttle], 8) == 8
    await throttle.close()
    warnings = [r for r in caplog.records if "rate limits cannot be counted" in r.message]
    assert len(warnings) == 1  # not one per request


async def test_a_policy_left_empty_counts_nothing() -> None:
    settings = Settings(rate_limit_anonymous="")
    throttle = Throttle(settings, lambda: rate_storage(settings))
    for _ in range(1000):
        await throttle.anonymous("10.0.0.1")
