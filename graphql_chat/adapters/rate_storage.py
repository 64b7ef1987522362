"""Where rate limits are counted (the `limits` library's storages): in memory in the embedded
mode, in Redis when REDIS_URL is set, so that a limit holds across API processes. The Redis
storage runs over the same topology numbering does (one server, a Sentinel-watched master,
or a Redis Cluster), its keys under REDIS_KEY_PREFIX."""

from __future__ import annotations

from functools import partial
from urllib.parse import urlsplit

from limits.aio.storage import MemoryStorage, RedisClusterStorage, RedisStorage

from graphql_chat.adapters import redis_client
from graphql_chat.config import Settings
from graphql_chat.ports import RateCounters

_TIMEOUT = 1.0  # seconds: a limit not known by then lets the request through (see Throttle)


async def _nothing() -> None:
    return None


def rate_storage(settings: Settings) -> RateCounters:
    """The storage, and what closes its connections."""
    if not settings.redis_url:
        return MemoryStorage(), _nothing
    prefix = f"{settings.redis_key_prefix}:rate"
    url = settings.redis_url
    if redis_client.is_cluster(url):
        parts = urlsplit(url)
        cluster = RedisClusterStorage(
            f"async+redis+cluster://{parts.netloc}",
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            ssl=parts.scheme == "rediss+cluster",
            socket_timeout=_TIMEOUT,
            socket_connect_timeout=_TIMEOUT,
        )
        # The cluster client limits made (redis-py's, as `implementation` says): ours to close.
        client = cluster.bridge.storage  # type: ignore[attr-defined]
        return cluster, client.aclose
    # One server, or the master of a Sentinel group: our client's pool finds it (again, after
    # a failover), and the storage sends its commands through that pool.
    client = redis_client.connect(
        url, max_connections=64, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
    )
    storage = RedisStorage(
        "async+redis://",
        implementation="redispy",
        key_prefix=prefix,
        wrap_exceptions=True,
        connection_pool=client.connection_pool,  # type: ignore[arg-type]  # passed on as is
    )
    return storage, partial(redis_client.close, client)  # its pool, and its Sentinels
