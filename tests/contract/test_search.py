"""The search contract: every term a case-insensitive substring, newest first, one chat."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import UNKNOWN_TIME, ChatCreated, Event, MessageWritten, new_token
from graphql_chat.ports import Committed, IndexedMessage, Search
from graphql_chat.writer import Writer
from tests.engines import engine_url, unique_name

BODIES = [
    "Hello world",
    "a café in Paris",
    "CAFÉ CRÈME",
    "100% sure_thing",
    'she said "hi"',
    "wild*card? back\\slash",
    "Message in a bottle",
    "ok",
]


async def _apply(writer: Writer, events: Sequence[Event]) -> Committed:
    """Commit, then index, as a pipeline does once its client has its answer."""
    committed = await writer.commit(events)
    await writer.index(committed.stored)
    return committed


async def _chat(store: SqlStore, writer: Writer, bodies: list[str], chat: int = 1) -> int:
    app = (await store.insert_application(new_token(), "a")).id
    await _apply(
        writer,
        [ChatCreated(app, chat)]
        + [MessageWritten(app, chat, n, body, n) for n, body in enumerate(bodies, start=1)],
    )
    if isinstance(writer.indexer, ElasticSearch):
        await writer.indexer.refresh()
    return (await store.chats_by_number([(app, chat)]))[(app, chat)].id


async def _numbers(search: Search, chat_id: int, query: str) -> list[int]:
    found = await search.search([chat_id], query.split(), None, 50)
    return [m.number for m in found[chat_id]]


async def test_terms_are_case_insensitive_substrings(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    chat = await _chat(store, writer, BODIES)
    assert await _numbers(search, chat, "ssag") == [7]
    assert await _numbers(search, chat, "WORLD") == [1]
    assert await _numbers(search, chat, "CAFÉ") == [3, 2]
    assert await _numbers(search, chat, "café crè") == [3]
    assert await _numbers(search, chat, "o") == [8, 7, 1]
    assert await _numbers(search, chat, "OK") == [8]
    assert await _numbers(search, chat, "hello paris") == []


async def test_special_characters_are_literal(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    chat = await _chat(store, writer, BODIES)
    assert await _numbers(search, chat, "%") == [4]
    assert await _numbers(search, chat, "_") == [4]
    assert await _numbers(search, chat, "*") == [6]
    assert await _numbers(search, chat, "?") == [6]
    assert await _numbers(search, chat, "\\") == [6]
    assert await _numbers(search, chat, '"hi"') == [5]
    assert await _numbers(search, chat, '"') == [5]
    assert await _numbers(search, chat, "OR") == [1]
    assert await _numbers(search, chat, "NEAR(a") == []


async def test_newest_first_and_paginated(store: SqlStore, writer: Writer, search: Search) -> None:
    chat = await _chat(store, writer, [f"note {n}" for n in range(1, 26)])
    first = (await search.search([chat], ["note"], None, 10))[chat]
    assert [m.number for m in first] == list(range(25, 15, -1))
    second = (await search.search([chat], ["note"], first[-1].number, 10))[chat]
    assert [m.number for m in second] == list(range(15, 5, -1))


async def test_scoped_to_its_chat(store: SqlStore, writer: Writer, search: Search) -> None:
    one = await _chat(store, writer, ["shared words"])
    two = await _chat(store, writer, ["shared words", "shared too"])
    assert await _numbers(search, one, "shared") == [1]
    assert await _numbers(search, two, "shared") == [2, 1]


async def test_updates_replace_the_indexed_body(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    await _apply(writer, [ChatCreated(app, 1), MessageWritten(app, 1, 1, "before edit", 1)])
    await _apply(writer, [MessageWritten(app, 1, 1, "after edit", 2)])
    await _apply(writer, [MessageWritten(app, 1, 1, "stale replay", 1)])
    await search.refresh()
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)].id
    assert await _numbers(search, chat, "before") == []
    assert await _numbers(search, chat, "after") == [1]
    assert await _numbers(search, chat, "stale") == []


async def test_rebuild_restores_the_index(store: SqlStore, writer: Writer, search: Search) -> None:
    chat = await _chat(store, writer, BODIES)
    seen: list[int] = []
    assert await search.rebuild(store, seen.append) == len(BODIES)
    assert sum(seen) == len(BODIES)
    assert await _numbers(search, chat, "bottle") == [7]


async def test_long_bodies_are_searchable_everywhere(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    filler = "lorem ipsum " * 6000  # 72,000 characters: several index chunks
    needle = "Ñandú" + "x" * 995  # a 1,000-character term across a chunk boundary
    body = filler[:7500] + needle + filler[:60000]
    chat = await _chat(store, writer, [body, "short"])
    assert await _numbers(search, chat, needle.upper()) == [1]
    assert await _numbers(search, chat, "IPSUM") == [1]
    assert await _numbers(search, chat, filler[-50:].strip()) == [1]


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_processes_starting_together_share_one_index(store: SqlStore) -> None:
    """Elasticsearch creates its index at start; FTS5's comes with the store's migration."""
    index = unique_name("test")
    adapters = [ElasticSearch(engine_url("ELASTICSEARCH_URL"), index) for _ in range(4)]
    try:
        await asyncio.gather(*[a.start() for a in adapters])
        for adapter in adapters:
            at = datetime.now(UTC)
            await adapter.index([IndexedMessage(1, 1, "hello", 1, at, at)])  # raises if not ready
    finally:
        await adapters[0].drop()
        for adapter in adapters:
            await adapter.close()


async def test_a_replayed_batch_indexes_what_was_committed_but_not_indexed(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    """A worker killed between its commit and its indexing: the redelivered batch, a no-op for
    the store, must still reach the index."""
    app = (await store.insert_application(new_token(), "a")).id
    batch: list[Event] = [ChatCreated(app, 1), MessageWritten(app, 1, 1, "committed only", 1)]
    await store.apply(batch)  # the commit happened; the indexing did not
    await _apply(writer, batch)  # the redelivery
    await search.refresh()
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert await _numbers(search, chat.id, "committed") == [1]
    assert chat.messages_count == 1


async def test_many_chats_in_one_call(store: SqlStore, writer: Writer, search: Search) -> None:
    """Each chat gets what searching it alone gets; a chat without a match gets an empty list."""
    one = await _chat(store, writer, [f"note {n}" for n in range(1, 8)])
    two = await _chat(store, writer, ["no match here", "a note", "another note"])
    three = await _chat(store, writer, ["nothing"])
    found = await search.search([one, two, three, one], ["note"], 6, 3)
    assert {chat: [m.number for m in rows] for chat, rows in found.items()} == {
        one: [5, 4, 3],
        two: [3, 2],
        three: [],
    }
    for chat in (one, two, three):
        assert (await search.search([chat], ["note"], 6, 3))[chat] == found[chat]
    assert await search.search([], ["note"], None, 3) == {}


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_fts5_keeps_each_chat_in_its_own_range(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    """Chats written in turn, every body matching: a search reads its chat's range only, newest
    first, from any `before`, up to the chat's first and last numbers."""
    app = (await store.insert_application(new_token(), "a")).id
    events: list[Event] = [ChatCreated(app, c) for c in (1, 2, 3)]
    for n in range(1, 31):
        events += [MessageWritten(app, c, n, f"zz {c}:{n} Zebra", n) for c in (1, 2, 3)]
    await _apply(writer, events)
    ids = await store.chats_by_number([(app, c) for c in (1, 2, 3)])
    one, two, three = (ids[(app, c)].id for c in (1, 2, 3))
    found = await search.search([one, two, three], ["zebra"], None, 100)
    for chat in (one, two, three):
        assert [m.number for m in found[chat]] == list(range(30, 0, -1))
    page = await search.search([two], ["z"], 11, 4)
    assert [(m.number, m.body) for m in page[two]] == [
        (n, f"zz {ids[(app, 2)].number}:{n} Zebra") for n in (10, 9, 8, 7)
    ]
    assert [m.number for m in (await search.search([three], ["zz"], 2, 5))[three]] == [1]
    assert (await search.search([three], ["zz"], 1, 5))[three] == []
    assert (await search.search([one], [":30 zeb"], None, 5))[one][0].number == 30


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_an_fts5_index_of_other_ngrams_is_refused_until_reindexed(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    """Tokens made by another encoding or Unicode version could not be deleted exactly: a
    process refuses to start on them, and `rebuild` makes them again."""
    from sqlalchemy import text

    from graphql_chat.errors import ConfigurationError

    chat = await _chat(store, writer, BODIES)
    await store.write(lambda conn: conn.execute(text("UPDATE message_grams_version SET grams = 0")))
    with pytest.raises(ConfigurationError, match="graphql-chat reindex"):
        await search.start()
    await store.write(
        lambda conn: conn.execute(
            text("INSERT INTO message_grams(message_grams) VALUES ('delete-all')")
        )
    )
    assert await _numbers(search, chat, "café") == []
    seen: list[int] = []
    assert await search.rebuild(store, seen.append) == len(BODIES) == seen[-1]
    await search.start()
    assert await _numbers(search, chat, "café") == [3, 2]


async def test_terms_across_ngrams_repeats_and_short_terms(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    bodies = [
        "aaaa",  # 1
        "abcabcabc",  # 2
        "x\ty\u00a0z end",  # 3: a tab and a no-break space inside
        "private \ue000\ue001 use",  # 4: the n-gram escape characters themselves
        "Straße ÇA VA",  # 5
        "b",  # 6
        'one\nsaid "two" \x1f',  # 7: a line break, quotes, a control character
    ]
    chat = await _chat(store, writer, bodies)
    assert await _numbers(search, chat, "aaaa") == [1]
    assert await _numbers(search, chat, "aaaaa") == []
    assert await _numbers(search, chat, "aa") == [1]
    assert await _numbers(search, chat, "cabca") == [2]
    assert await _numbers(search, chat, "abcabcabca") == []
    assert await _numbers(search, chat, "BCA") == [2]
    assert await _numbers(search, chat, "b") == [6, 2]
    assert await _numbers(search, chat, "o") == [7]
    assert await _numbers(search, chat, "y\u00a0z") == [3]
    assert await _numbers(search, chat, "\ue000\ue001") == [4]
    assert await _numbers(search, chat, "\ue000") == [4]
    assert await _numbers(search, chat, "ç") == [5]
    assert await _numbers(search, chat, "STRASSE") == []  # lower case, not case folding
    assert await _numbers(search, chat, "straße ça") == [5]
    for term in ('E\nSAID "T', '"two"', "\n", " \x1f", "\x1f"):  # one term each
        assert [m.number for m in (await search.search([chat], [term], None, 9))[chat]] == [7]
    long_term = "abc" * 333
    assert await _numbers(search, chat, long_term) == []


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_an_index_of_an_older_mapping_is_refused_until_reindexed(
    store: SqlStore, writer: Writer
) -> None:
    """An index made before mapping versions (its name the alias's, no version) stops
    a process at start with the way out; `rebuild` replaces it while it keeps answering."""
    from elasticsearch import AsyncElasticsearch

    from graphql_chat.errors import ConfigurationError

    name = unique_name("test")
    raw = AsyncElasticsearch(engine_url("ELASTICSEARCH_URL"))
    old_mapping = {"properties": {"chat_id": {"type": "long"}, "number": {"type": "long"}}}
    await raw.indices.create(index=name, mappings=old_mapping)
    search = ElasticSearch(engine_url("ELASTICSEARCH_URL"), name)
    try:
        with pytest.raises(ConfigurationError, match="graphql-chat reindex"):
            await search.start()
        chat = await _chat(store, Writer(store, _NoSearch()), BODIES)
        seen: list[int] = []
        assert await search.rebuild(store, seen.append) == len(BODIES)
        await search.start()  # now the current mapping, behind the alias
        assert await _numbers(search, chat, "café") == [3, 2]
        assert list(await raw.indices.get_alias(name=name)) != [name]
    finally:
        await search.drop()
        await search.close()
        await raw.close()


class _NoSearch:
    """Only the store: the index is what is being replaced."""

    async def index(self, messages: object) -> None:
        pass

    async def refresh(self) -> None:
        pass


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_reindexing_a_live_system_answers_throughout_and_loses_no_write(
    store: SqlStore, writer: Writer, search: Search
) -> None:
    assert isinstance(search, ElasticSearch)
    app = (await store.insert_application(new_token(), "a")).id
    await _apply(
        writer,
        [ChatCreated(app, 1)]
        + [MessageWritten(app, 1, n, f"before {n}", n) for n in range(1, 3001)],
    )
    await search.refresh()
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)].id
    stop = asyncio.Event()
    answers: list[int] = []

    async def searching() -> None:
        while not stop.is_set():
            found = await search.search([chat], ["before"], None, 5)
            answers.append(len(found[chat]))
            await asyncio.sleep(0.01)

    async def writing() -> None:
        for n in range(3001, 3201):  # new messages, and edits of old ones, during the copy
            await _apply(
                writer,
                [
                    MessageWritten(app, 1, n, f"during {n}", n),
                    MessageWritten(app, 1, n - 3000, f"edited {n}", 10_000 + n),
                ],
            )
            await asyncio.sleep(0.005)

    searcher = asyncio.create_task(searching())
    rebuilt, _ = await asyncio.gather(search.rebuild(store, lambda _: None), writing())
    stop.set()
    await searcher
    assert rebuilt >= 3000
    assert len(answers) > 10 and all(count == 5 for count in answers)
    await search.refresh()
    assert len((await search.search([chat], ["during"], None, 500))[chat]) == 200
    assert len((await search.search([chat], ["edited"], None, 500))[chat]) == 200
    assert len((await search.search([chat], ["before"], None, 5000))[chat]) == 2800


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_an_index_of_mapping_2_takes_the_times_in_place(store: SqlStore) -> None:
    """An index made before messages carried times is upgraded at start, without a rebuild:
    documents indexed before answer with times unknown (the service reads them from the
    store), documents indexed after with their own."""
    from elasticsearch import AsyncElasticsearch

    from graphql_chat.adapters import elastic_search

    alias = unique_name("test")
    raw = AsyncElasticsearch(engine_url("ELASTICSEARCH_URL"))
    mapping_2 = dict(elastic_search.MAPPING)
    mapping_2["_meta"] = {"version": 2}
    mapping_2["properties"] = {
        name: field
        for name, field in elastic_search.MAPPING["properties"].items()
        if name not in ("created_at", "updated_at")
    }
    await raw.indices.create(
        index=f"{alias}-v2",
        mappings=mapping_2,
        settings=elastic_search.SETTINGS,
        aliases={alias: {}},
    )
    old = {"chat_id": 7, "number": 1, "body": "hello old", **elastic_search.grams("hello old")}
    await raw.index(index=alias, id="7:1", document=old, version=1, version_type="external")
    search = ElasticSearch(engine_url("ELASTICSEARCH_URL"), alias)
    try:
        await search.start()
        at = datetime(2026, 11, 30, 2, 21, 11, 123456, tzinfo=UTC)
        await search.index([IndexedMessage(7, 2, "hello new", 2, at, at + timedelta(seconds=1))])
        await search.refresh()
        found = (await search.search([7], ["hello"], None, 10))[7]
        assert [(m.number, m.created_at, m.updated_at) for m in found] == [
            (2, at, at + timedelta(seconds=1)),
            (1, UNKNOWN_TIME, UNKNOWN_TIME),
        ]
        mappings = await raw.indices.get_mapping(index=alias)
        [current] = mappings.body.values()
        assert current["mappings"]["_meta"]["version"] == elastic_search.MAPPING_VERSION
    finally:
        await search.drop()
        await search.close()
        await raw.close()


async def test_matches_page_both_ways(store: SqlStore, writer: Writer, search: Search) -> None:
    """Forward: newest first, below a number. Backward: oldest first, above it (the oldest
    matches without one), in this chat only, each page bounded."""
    bodies = [f"match {n}" if n % 3 else f"other {n}" for n in range(1, 31)]
    chat = await _chat(store, writer, bodies)
    other = await _chat(store, writer, ["match elsewhere"] * 5)
    matching = [n for n in range(1, 31) if n % 3]

    async def page(before: int | None, limit: int, backward: bool) -> list[int]:
        found = await search.search([chat, other], ["match"], before, limit, backward)
        if before is None:  # the other chat's matches, the same way
            expected = [1, 2, 3, 4, 5] if backward else [5, 4, 3, 2, 1]
            assert [m.number for m in found[other]] == expected[:limit]
        return [m.number for m in found[chat]]

    assert await page(None, 4, False) == sorted(matching, reverse=True)[:4]
    assert await page(None, 4, True) == matching[:4]
    assert await page(10, 3, True) == [11, 13, 14]
    assert await page(11, 3, False) == [10, 8, 7]
    assert await page(29, 5, True) == []
    assert await page(1, 5, False) == []


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_the_index_is_made_with_the_shards_and_replicas_asked_for(store: SqlStore) -> None:
    """A new deployment's index and a rebuild's take ELASTICSEARCH_SHARDS and _REPLICAS."""
    from elasticsearch import AsyncElasticsearch

    alias = unique_name("test")
    search = ElasticSearch(engine_url("ELASTICSEARCH_URL"), alias, shards=3, replicas=0)
    raw = AsyncElasticsearch(engine_url("ELASTICSEARCH_URL"))
    try:
        await search.start()

        async def shape() -> tuple[str, str]:
            [(_, found)] = (await raw.indices.get_settings(index=alias)).body.items()
            index = found["settings"]["index"]
            return index["number_of_shards"], index["number_of_replicas"]

        assert await shape() == ("3", "0")
        wider = ElasticSearch(engine_url("ELASTICSEARCH_URL"), alias, shards=2, replicas=0)
        try:
            await _chat(store, Writer(store, wider), BODIES)
            await wider.rebuild(store, lambda _: None)
            assert await shape() == ("2", "0")  # the rebuilt index, behind the alias
        finally:
            await wider.close()
    finally:
        await search.drop()
        await search.close()
        await raw.close()
