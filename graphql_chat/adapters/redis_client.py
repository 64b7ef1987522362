"""Redis clients by URL: one server, or the master a group of Sentinels watches.

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]     one server (also rediss://, unix://)
    redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB]
                                                   the master of SERVICE, as the Sentinels at
                                                   those addresses (port 26379 by default) name
                                                   it; rediss+sentinel:// for TLS to the master

    redis+cluster://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]
                                                   a Redis Cluster, found from any of those
                                                   nodes (port 6379 by default); rediss+cluster://
                                                   for TLS

After a failover the client finds the new master by asking the Sentinels again (a command on a
connection to the old one fails once, as Redis being unavailable). The password is the
master's; `?sentinel_password=` gives the Sentinels' when they have one. A cluster client
follows the cluster's slot map, and learns it again when a slot moves.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from graphql_chat.config import CLUSTER_SCHEMES, SENTINEL_SCHEMES, sentinel_service

_SENTINEL_PORT = 26379
_REDIS_PORT = 6379


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def is_cluster(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def waits(url: str) -> bool:
    """Whether `connect(url, max_connections=N)` makes a command wait for a free connection
    when all N are busy (one server's pool), rather than fail (Sentinel's, a cluster's)."""
    return not (is_sentinel(url) or is_cluster(url))


def connect(url: str, max_connections: int | None = None, **options: Any) -> Redis:
    """A client for `url`. `max_connections`: a pool of at most that many, where a command
    waits (up to 5 s) for a free connection rather than failing (a Sentinel-managed pool
    fails at once instead: it has no waiting variant; a cluster client has that many per
    node, and fails at once too).

    A cluster client is typed as `Redis`: it answers every command this project sends the
    same way, routed by key, and `is_cluster` tells the callers that care."""
    if is_sentinel(url):
        return _sentinel_master(url, max_connections, options)
    if is_cluster(url):
        return cast(Redis, _cluster(url, max_connections, options))
    if max_connections is not None:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, **options
        )
        return Redis(connection_pool=pool)
    client: Redis = Redis.from_url(url, **options)
    return client


async def ready(client: Redis) -> None:
    """Learn a cluster's slot map now: left to the first commands, many at once would each
    start learning it, and drop connections the others are opening."""
    if isinstance(client, RedisCluster):
        await client.initialize()


async def close(client: Redis) -> None:
    """Close `client`, its pool, and the connections to the Sentinels that named its master."""
    if isinstance(client, RedisCluster):
        await client.aclose()
        return
    pool = client.connection_pool
    await client.aclose(close_connection_pool=True)
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


def _addresses(hosts: str, default_port: int) -> list[tuple[str, int]]:
    addresses = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        if not colon or not port.isdigit():  # no port (or an IPv6 address without one)
            name, port = host, str(default_port)
        addresses.append((name.strip("[]"), int(port)))
    return addresses


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    """The user, the password and the hosts of a URL's network location."""
    credentials, _, hosts = netloc.rpartition("@")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    return unquote(username) or None, unquote(password) or None, hosts


def _cluster(url: str, max_connections: int | None, options: dict[str, Any]) -> RedisCluster:
    parts = urlsplit(url)
    username, password, hosts = _credentials(parts.netloc)
    nodes = [ClusterNode(host, port) for host, port in _addresses(hosts, _REDIS_PORT)]
    if max_connections is not None:
        options = {**options, "max_connections": max_connections}
    options.pop("health_check_interval", None)  # per connection; the cluster checks itself
    return RedisCluster(
        startup_nodes=nodes,
        username=username,
        password=password,
        ssl=parts.scheme == "rediss+cluster",
        **options,
    )


def _sentinel_master(url: str, max_connections: int | None, options: dict[str, Any]) -> Redis:
    parts = urlsplit(url)
    username, password, hosts = _credentials(parts.netloc)
    addresses = _addresses(hosts, _SENTINEL_PORT)
    service, db = sentinel_service(parts.path)
    query = parse_qs(parts.query)
    sentinel_options: dict[str, Any] = {
        key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options
    }
    if "sentinel_password" in query:
        sentinel_options["password"] = query["sentinel_password"][0]
    sentinel = Sentinel(addresses, sentinel_kwargs=sentinel_options)  # type: ignore[no-untyped-call]
    master: Redis = sentinel.master_for(
        service,
        db=db,
        username=username,
        password=password,
        ssl=parts.scheme == "rediss+sentinel",
        max_connections=max_connections,
        **options,
    )
    return master
