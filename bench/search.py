"""Benchmark search as the data grows, on both search backends.

    python -m bench.search [--messages 1000000] [--big-chat 100000] [--chat-size 1000]
                           [--backends fts5,elasticsearch] [--queries 30] [--clients 4]

Generates a reproducible corpus (a 20,000-word vocabulary drawn with a Zipf law, bodies of 6
to 16 words; one chat of `--big-chat` messages, the rest in chats of `--chat-size`), loads it
through each backend's own indexing path (the store's transaction and FTS5 triggers for SQLite;
the adapter's bulk indexing for Elasticsearch, on the engine of `make services`), and measures
queries made of terms nobody searched before (each term is used once, for the latencies; the
throughput runs reuse terms of a kind once its fresh ones run out): 1 to 2-character
fragments, 3 to 5-character fragments, whole common words, two-term queries and terms with no
match, in the big chat and in a small one. Prints p50/p99 latency one query at a time,
throughput with `--clients` concurrent clients, the load rate and the index size on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import string
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.distributed import _services
from graphql_chat import migrations
from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.fts5_search import Fts5Search
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, Event, MessageWritten, new_token
from graphql_chat.ports import Index, IndexedMessage, Search

KINDS = ("1-2 chars", "3-5 chars", "common word", "two terms", "no match")
LOAD_BATCH = 5000


@dataclass(frozen=True)
class Corpus:
    messages: int
    big_chat: int
    chat_size: int
    seed: int = 7

    @property
    def chats(self) -> int:
        return 1 + -(-(self.messages - self.big_chat) // self.chat_size)

    def vocabulary(self) -> list[str]:
        rng = random.Random(self.seed)
        words: set[str] = set()
        while len(words) < 20_000:
            words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10))))
        return sorted(words, key=lambda w: (rng.random(), w))  # rank order, reproducible

    def bodies(self) -> Iterator[tuple[int, int, str]]:
        """(chat, number, body) for every message, chat 1 being the big one."""
        rng = random.Random(self.seed + 1)
        words = self.vocabulary()
        weights = [1 / (rank + 1) ** 1.07 for rank in range(len(words))]
        cumulative = list(_accumulate(weights))
        for index in range(self.messages):
            if index < self.big_chat:
                chat, number = 1, index + 1
            else:
                offset = index - self.big_chat
                chat, number = 2 + offset // self.chat_size, 1 + offset % self.chat_size
            count = rng.randint(6, 16)
            body = " ".join(rng.choices(words, cum_weights=cumulative, k=count))
            yield chat, number, body.capitalize()


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


class Terms:
    """Fresh terms of each kind: no term is handed out twice in a run."""

    def __init__(self, corpus: Corpus) -> None:
        self._rng = random.Random(corpus.seed + 2)
        self._words = corpus.vocabulary()
        self._at_least = {n: [w for w in self._words if len(w) >= n] for n in range(1, 6)}
        self._used: set[str] = set()

    def _fresh(self, make: Callable[[], str]) -> str:
        """A term not used before, or (once a kind's terms run out: there are 702 lowercase
        strings of 1 or 2 letters) one used before."""
        for _ in range(200):
            term = make()
            if term.lower() not in self._used:
                self._used.add(term.lower())
                return term
        return make()  # this kind has (almost) no fresh term left

    def _fragment(self, low: int, high: int) -> str:
        word = self._rng.choice(self._at_least[low])
        length = self._rng.randint(low, min(high, len(word)))
        start = self._rng.randint(0, len(word) - length)
        fragment = word[start : start + length]
        return fragment.upper() if self._rng.random() < 0.3 else fragment  # case-insensitive

    def query(self, kind: str) -> list[str]:
        if kind == "1-2 chars":
            return [self._fresh(lambda: self._fragment(1, 2))]
        if kind == "3-5 chars":
            return [self._fresh(lambda: self._fragment(3, 5))]
        if kind == "common word":
            return [self._fresh(lambda: self._words[self._rng.randint(0, 2000)])]
        if kind == "two terms":
            return [
                self._fresh(lambda: self._fragment(3, 5)),
                self._fresh(lambda: self._fragment(2, 4)),
            ]
        return [self._fresh(lambda: "".join(self._rng.choices("0123456789ñ", k=5)))]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def _load(search: Search, store: SqlStore | None, corpus: Corpus) -> float:
    """Load the corpus through the backend's indexing path; the rate in messages a second."""
    started = time.perf_counter()
    if store is not None:  # FTS5: the store's transaction, its triggers index
        await load_store(store, corpus)
    else:
        assert isinstance(search, ElasticSearch)
        await load_index(search, corpus)
    await search.refresh()
    return corpus.messages / (time.perf_counter() - started)


async def load_store(store: SqlStore, corpus: Corpus) -> None:
    """The corpus into the store, in batches of its own transactions."""
    app = (await store.insert_application(new_token(), "bench")).id
    await store.apply([ChatCreated(app, chat) for chat in range(1, corpus.chats + 1)])
    batch: list[Event] = []
    for chat, number, body in corpus.bodies():
        batch.append(MessageWritten(app, chat, number, body, number, created=True))
        if len(batch) == LOAD_BATCH:
            await store.apply(batch)
            batch = []
    if batch:
        await store.apply(batch)


async def load_index(search: Index, corpus: Corpus) -> None:
    """The corpus into a search index, through the adapter's bulk indexing."""
    indexed: list[IndexedMessage] = []
    at = datetime.now(UTC)
    for chat, number, body in corpus.bodies():
        indexed.append(IndexedMessage(chat, number, body, number, at, at))
        if len(indexed) == LOAD_BATCH:
            await search.index(indexed)
            indexed = []
    if indexed:
        await search.index(indexed)


Row = tuple[str, str, float, float, float]  # kind, chat, p50 ms, p99 ms, queries a second


async def _throughput(search: Search, chat_id: int, terms: Terms, kind: str, clients: int) -> float:
    done = 0
    deadline = time.perf_counter() + 3

    async def client() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await search.search([chat_id], terms.query(kind), None, 20)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    return done / (time.perf_counter() - started)


async def _measure(
    search: Search, chat_ids: dict[str, int], terms: Terms, queries: int, clients: int
) -> list[Row]:
    rows = []
    for kind in KINDS:
        for chat_name, chat_id in chat_ids.items():
            latencies = []
            for _ in range(queries):
                query = terms.query(kind)
                started = time.perf_counter()
                await search.search([chat_id], query, None, 20)
                latencies.append((time.perf_counter() - started) * 1000)
            rate = await _throughput(search, chat_id, terms, kind, clients)
            p50, p99 = statistics.median(latencies), _percentile(latencies, 0.99)
            rows.append((kind, chat_name, p50, p99, rate))
    return rows


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


async def _fts5(corpus: Corpus, args: argparse.Namespace) -> tuple[float, int, list[Row]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "search.db"
        url = f"sqlite+aiosqlite:///{path}"
        await migrations.upgrade_async(url)
        store = SqlStore(url, "OFF")
        await store.start()
        search = Fts5Search(store)
        try:
            rate = await _load(search, store, corpus)
            chats = await store.chats_by_number([(1, 1), (1, 2)])
            chat_ids = {"big chat": chats[(1, 1)].id, "small chat": chats[(1, 2)].id}
            rows = await _measure(search, chat_ids, Terms(corpus), args.queries, args.clients)
            return rate, _size(path), rows
        finally:
            await store.close()


async def _elasticsearch(corpus: Corpus, args: argparse.Namespace) -> tuple[float, int, list[Row]]:
    url = _services()["ELASTICSEARCH_URL"]
    index = f"bench-search-{secrets.token_hex(4)}"
    search = ElasticSearch(url, index)
    await search.start()
    try:
        rate = await _load(search, None, corpus)
        client = search._client
        await client.indices.forcemerge(index=search.index_name, max_num_segments=5)
        stats = await client.indices.stats(index=search.index_name, metric="store")
        size = int(stats["_all"]["primaries"]["store"]["size_in_bytes"])
        chat_ids = {"big chat": 1, "small chat": 2}
        rows = await _measure(search, chat_ids, Terms(corpus), args.queries, args.clients)
        return rate, size, rows
    finally:
        await search.drop()
        await search.close()


Measured = tuple[float, int, list[Row]]  # load rate, index bytes, query rows
BACKENDS: dict[str, Callable[[Corpus, argparse.Namespace], Coroutine[Any, Any, Measured]]] = {
    "fts5": _fts5,
    "elasticsearch": _elasticsearch,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--big-chat", type=int, default=100_000)
    parser.add_argument("--chat-size", type=int, default=1000)
    parser.add_argument("--backends", default="fts5,elasticsearch")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    corpus = Corpus(args.messages, min(args.big_chat, args.messages), args.chat_size)
    print(
        f"corpus: {corpus.messages:,} messages, one chat of {corpus.big_chat:,} and "
        f"{corpus.chats - 1:,} of up to {corpus.chat_size:,}; {args.queries} fresh queries per "
        f"kind and chat one at a time, then {args.clients} clients for 3 s\n"
    )
    for name in args.backends.split(","):
        rate, size, rows = asyncio.run(BACKENDS[name](corpus, args))
        print(f"## {name}: loaded at {rate:,.0f} messages/s, index {size / 2**20:,.0f} MiB\n")
        print("| query | chat | p50 ms | p99 ms | queries/s |")
        print("|---|---|---:|---:|---:|")
        for kind, chat, p50, p99, throughput in rows:
            print(f"| {kind} | {chat} | {p50:.1f} | {p99:.1f} | {throughput:,.0f} |")
        print()


if __name__ == "__main__":
    main()
