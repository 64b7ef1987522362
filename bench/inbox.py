"""Benchmark a user's inbox (their chats by latest activity, with last messages and unread
counts) and unread totals, as the store grows, on SQLite and on MySQL.

    python -m bench.inbox [--chats 10000] [--messages 1000000] [--engines sqlite,mysql]
                          [--samples 300]

Loads one application where one user is in `--chats` chats (each with one other member),
holding `--messages` messages in all, written through the batch path the workers use (so
members' rows are kept level with their chats as in production), the user's read markers
left at random places. Then reads pages of 20 of the inbox from random places (the first
page, and pages after a random chat's cursor) the way the REST inbox answers one (the page,
each chat's unread count, each chat's last message), and the unread totals; prints p50/p99
milliseconds of each, one call at a time. MySQL is the engine of `make services`, in a
database of its own, dropped after.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert
from sqlalchemy.engine import make_url

from bench.distributed import _services, _sql
from graphql_chat import migrations
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import (
    ChatCreated,
    Event,
    MessageWritten,
    ReadMarked,
    User,
    new_token,
)
from graphql_chat.tables import chat_members
from graphql_chat.usecases.reading import UNREAD_TOTAL_CAP

PAGE = 20
LOAD_BATCH = 5000
ME = "me"


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _load(store: SqlStore, chats: int, messages: int) -> tuple[User, float]:
    rng = random.Random(7)
    app = await store.insert_application(new_token(), "bench")
    await store.apply([ChatCreated(app.id, chat) for chat in range(1, chats + 1)])
    now = int(time.time() * 1_000_000) - messages * 1000
    rows = [
        {
            "application_id": app.id,
            "chat_number": chat,
            "user_id": user,
            "joined_at": now,
            "active_at": now,
        }
        for chat in range(1, chats + 1)
        for user in (ME, "other")
    ]
    await store.write(lambda conn: conn.execute(insert(chat_members), rows))
    started = time.perf_counter()
    counts = [0] * (chats + 1)
    batch: list[Event] = []
    for i in range(messages):
        chat = rng.randint(1, chats)
        counts[chat] += 1
        author = ME if rng.random() < 0.2 else "other"
        at = now + i * 1000
        batch.append(
            MessageWritten(
                app.id,
                chat,
                counts[chat],
                f"message {i}",
                i + 1,
                created=True,
                at=at,
                author=author,
            )
        )
        if len(batch) == LOAD_BATCH:
            await store.apply(batch)
            batch = []
    batch += [
        ReadMarked(app.id, chat, ME, rng.randint(0, counts[chat]), now + messages * 1000 + 1)
        for chat in range(1, chats + 1)
    ]
    await store.apply(batch)
    rate = messages / (time.perf_counter() - started)
    user = User(app.id, app.token, str(app.public_id), ME)
    return user, rate


async def _page(store: SqlStore, user: User, key: int | None) -> int:
    """One inbox page as the REST inbox reads it: the rows with their chats, the unread
    counts, the last messages (three statements)."""
    rows = (await store.reading.inbox(user.application_id, user.id, key, PAGE + 1, False))[:PAGE]
    await store.reading.unread_counts(
        user.id, {chat.id: m.last_read_number for m, chat in rows if chat is not None}
    )
    await store.messages_by_number(
        [(chat.id, m.top_number) for m, chat in rows if chat is not None and m.top_number]
    )
    return rows[-1][0].inbox_key if rows else 0


async def _measure(store: SqlStore, user: User, samples: int) -> dict[str, list[float]]:
    rng = random.Random(11)
    keys = [
        m.inbox_key
        for m, _ in await store.reading.inbox(user.application_id, ME, None, 100_000, False)
    ]
    timings: dict[str, list[float]] = {"first page": [], "a page deep in": [], "unread totals": []}
    await _page(store, user, None)  # statements made and compiled once, as a server has
    await _page(store, user, keys[len(keys) // 2])
    await store.reading.unread_totals(user.application_id, ME, UNREAD_TOTAL_CAP)
    for _ in range(samples):
        for name, key in (("first page", None), ("a page deep in", rng.choice(keys))):
            started = time.perf_counter()
            await _page(store, user, key)
            timings[name].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await store.reading.unread_totals(user.application_id, ME, UNREAD_TOTAL_CAP)
        timings["unread totals"].append((time.perf_counter() - started) * 1000)
    return timings


async def _run(url: str, args: argparse.Namespace) -> None:
    store = SqlStore(url, "OFF")
    await store.start()
    try:
        user, rate = await _load(store, args.chats, args.messages)
        timings = await _measure(store, user, args.samples)
    finally:
        await store.close()
    print(f"  loaded {args.messages} messages in {args.chats} chats at {rate:,.0f} messages/s")
    for name, values in timings.items():
        print(
            f"  {name:<16} p50 {_percentile(values, 0.5):6.2f} ms   "
            f"p99 {_percentile(values, 0.99):6.2f} ms   ({len(values)} calls)"
        )


async def _sqlite(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await migrations.upgrade_async(url)
        print("SQLite")
        await _run(url, args)


async def _mysql(args: argparse.Namespace) -> None:
    server = make_url(_services()["DATABASE_URL"])
    database = f"bench_{secrets.token_hex(4)}"
    _sql(
        server.set(database=None),
        f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    )
    try:
        url = server.set(database=database).render_as_string(hide_password=False)
        await migrations.upgrade_async(url)
        print("MySQL")
        await _run(url, args)
    finally:
        _sql(server.set(database=None), f"DROP DATABASE {database}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--engines", default="sqlite,mysql")
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    for engine in args.engines.split(","):
        asyncio.run({"sqlite": _sqlite, "mysql": _mysql}[engine](args))


if __name__ == "__main__":
    main()
