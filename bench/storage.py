"""What a stored message costs on disk, in MySQL and in Elasticsearch, for capacity planning.

    python -m bench.storage [--messages 200000]

Loads the search benchmark's corpus (`bench.search`: bodies of 6 to 16 words from a Zipf
vocabulary, about 70 characters; chats of 1,000) into a fresh MySQL database through the
store's own transactions, and into a fresh index through the adapter's bulk indexing, on the
engines of `make services`; then prints the bytes per message of each: MySQL's data and
indexes (InnoDB's figures after `ANALYZE TABLE`), Elasticsearch's primary store after a merge
to 5 segments (one copy: multiply by the replicas plus one).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.distributed import _services
from bench.search import Corpus, load_index, load_store
from graphql_chat import migrations
from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.sql_store import SqlStore


async def _mysql(corpus: Corpus) -> dict[str, float]:
    server = make_url(_services()["DATABASE_URL"])
    name = f"bench_storage_{secrets.token_hex(4)}"
    admin = create_async_engine(server)
    async with admin.begin() as conn:
        await conn.execute(
            text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        )
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(migrations.upgrade, url)
        store = SqlStore(url)
        await store.start()
        try:
            await load_store(store, corpus)
        finally:
            await store.close()
        async with admin.begin() as conn:
            sizes: dict[str, float] = {}
            for table in ("messages", "chats"):
                await conn.execute(text(f"ANALYZE TABLE {name}.{table}"))
                row = (
                    await conn.execute(
                        text(
                            "SELECT data_length, index_length FROM information_schema.tables "
                            "WHERE table_schema = :schema AND table_name = :table"
                        ),
                        {"schema": name, "table": table},
                    )
                ).one()
                sizes[f"{table} data"] = float(row[0]) / corpus.messages
                sizes[f"{table} indexes"] = float(row[1]) / corpus.messages
            return sizes
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        await admin.dispose()


async def _elasticsearch(corpus: Corpus) -> float:
    search = ElasticSearch(
        _services()["ELASTICSEARCH_URL"], f"bench-storage-{secrets.token_hex(4)}"
    )
    await search.start()
    try:
        await load_index(search, corpus)
        await search.refresh()
        client = search._client
        merging = client.options(request_timeout=600)
        await merging.indices.forcemerge(index=search.index_name, max_num_segments=5)
        stats = await client.indices.stats(index=search.index_name, metric="store")
        return int(stats["_all"]["primaries"]["store"]["size_in_bytes"]) / corpus.messages
    finally:
        await search.drop()
        await search.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=200_000)
    args = parser.parse_args()
    corpus = Corpus(args.messages, big_chat=1000, chat_size=1000)
    body = sum(len(b) for _, _, b in corpus.bodies()) / corpus.messages
    print(f"{args.messages:,} messages, {corpus.chats:,} chats, bodies of {body:.0f} characters")
    for part, size in asyncio.run(_mysql(corpus)).items():
        print(f"MySQL {part}: {size:.0f} bytes per message")
    elastic = asyncio.run(_elasticsearch(corpus))
    print(f"Elasticsearch (primary, merged): {elastic:.0f} bytes per message")


if __name__ == "__main__":
    main()
