"""Pages of several chats at once, against the size of the chats: `SqlStore.list_messages`
on SQLite for one chat of 100,000 messages alone, beside a chat of 1,000, and for ten chats of
100, from the start and from the middle.

    python -m bench.pages [--database /tmp/graphql-chat-pages.db]

The database is made on the first run (a minute) and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from graphql_chat import migrations
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, MessageWritten, new_token

ROUNDS = 50


async def _fill(url: str) -> None:
    await migrations.upgrade_async(url)
    store = SqlStore(url, "OFF")
    await store.start()
    app = (await store.insert_application(new_token(), "pages")).id
    await store.apply([ChatCreated(app, n) for n in range(1, 13)])
    for start in range(1, 100_001, 5000):
        await store.apply(
            [
                MessageWritten(app, 1, n, f"m{n}", n, created=True)
                for n in range(start, start + 5000)
            ]
        )
    await store.apply([MessageWritten(app, 2, n, f"m{n}", n, created=True) for n in range(1, 1001)])
    for chat in range(3, 13):
        await store.apply(
            [MessageWritten(app, chat, n, f"m{n}", n, created=True) for n in range(1, 101)]
        )
    await store.close()


async def main(path: Path, fresh: bool) -> None:
    url = f"sqlite+aiosqlite:///{path}"
    if fresh:
        await _fill(url)
    store = SqlStore(url, "OFF")
    await store.start()
    chats = (await store.list_chats([1], None, 20))[1]
    ids = {chat.number: chat.id for chat in chats}
    print("| chats in the page | from | ms per page of 20 (+1) each |")
    print("|---|---:|---:|")
    for label, keys in (
        ("the chat of 100,000 alone", [ids[1]]),
        ("the chat of 100,000 and one of 1,000", [ids[1], ids[2]]),
        ("ten chats of 100", [ids[n] for n in range(3, 13)]),
    ):
        for after in (None, 50_000):
            await store.list_messages(keys, after, 21)
            started = time.perf_counter()
            for _ in range(ROUNDS):
                await store.list_messages(keys, after, 21)
            took = (time.perf_counter() - started) / ROUNDS * 1000
            print(f"| {label} | {'start' if after is None else after} | {took:.2f} |")
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database", type=Path, default=Path("/tmp/graphql-chat-pages.db"))
    database = parser.parse_args().database
    asyncio.run(main(database, fresh=not database.exists()))
