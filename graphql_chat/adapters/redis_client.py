"""Redis clients by URL: one server, or the master a group of Sentinels watches.

    redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]     one server (also rediss://, unix://)
    redis+sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/SERVICE[/DB]
                                                   the master of SERVICE, as the Sentinels at
                                                   those addresses (port 26379 by default) name
                                                   it; rediss+sentinel:// for TLS to the master

After a failover the client finds the new master by asking the Sentinels again (a command on a
connection to the old one fails once, as Redis being unavailable). The password is the
master's; `?sentinel_password=` gives the Sentinels' when they have one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel

from graphql_chat.config import SENTINEL_SCHEMES, sentinel_service

_SENTINEL_PORT = 26379


def is_sentinel(url: str) -> bool:
    return urlsplit(url).scheme in SENTINEL_SCHEMES


def connect(url: str, max_connections: int | None = None, **options: Any) -> Redis:
    """A client for `url`. `max_connections`: a pool of at most that many, where a command
    waits (up to 5 s) for a free connection rather than failing (a Sentinel-managed pool
    fails at once instead: it has no waiting variant)."""
    if is_sentinel(url):
        return _sentinel_master(url, max_connections, options)
    if max_connections is not None:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, **options
        )
        return Redis(connection_pool=pool)
    client: Redis = Redis.from_url(url, **options)
    return client


async def close(client: Redis) -> None:
    """Close `client`, its pool, and the connections to the Sentinels that named its master."""
    pool = client.connection_pool
    await client.aclose(close_connection_pool=True)
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()


def _sentinel_master(url: str, max_connections: int | None, options: dict[str, Any]) -> Redis:
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    addresses = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        if not colon or not port.isdigit():  # no port (or an IPv6 address without one)
            name, port = host, str(_SENTINEL_PORT)
        addresses.append((name.strip("[]"), int(port)))
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
        username=unquote(username) or None,
        password=unquote(password) or None,
        ssl=parts.scheme == "rediss+sentinel",
        max_connections=max_connections,
        **options,
    )
    return master
