"""The search port on Elasticsearch (official async client): n-grams computed here.

Bodies are indexed, case-folded with Python's `str.lower` (what the other checks use), as
n-gram tokens: every three-character window (`grams3`, with positions), and the set of
two-character and one-character windows (`grams2`, `grams1`), each read by the core
`whitespace` analyzer, with the white space inside a gram escaped so that it stays one token:
no `analysis-common` module and no `wildcard` field type are needed, which is what the
integration-test distribution offers. A term of three characters or more is a phrase of its
trigrams (consecutive positions: exactly substring matching); a shorter one is one term query.
A query's cost follows the postings of the term's few n-grams, not the size of the term
dictionary, and the index is sorted by chat and number, so a chat's documents sit together.

`ELASTICSEARCH_INDEX` names an alias; the index behind it is `ALIAS-vVERSION` (or, once
rebuilt, `ALIAS-vVERSION-STAMP`), its mapping's `_meta.version` is `MAPPING_VERSION`.
`rebuild` builds a new index from the store port while writes and searches go on, swaps the alias
atomically, then copies again what changed meanwhile. A process refuses to start against an
index of an older mapping. Documents carry the message's revision as an external version, so
replays and out-of-order writes never let an older body replace a newer one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_bulk

from graphql_chat import grams as ngrams
from graphql_chat.domain import UNKNOWN_TIME, Message, instant, micros
from graphql_chat.errors import ConfigurationError, Unavailable
from graphql_chat.ports import Catalogue, IndexedMessage

log = logging.getLogger(__name__)

MAPPING_VERSION = 4
_GRAMS = {"type": "text", "analyzer": "whitespace", "norms": False}
# Version 3 added the message's times (microseconds since 1970-01-01 UTC, only returned):
# an index of version 2 takes them in place (documents indexed before lack them).
_TIMES: dict[str, Any] = {
    "created_at": {"type": "long", "index": False, "doc_values": False},
    "updated_at": {"type": "long", "index": False, "doc_values": False},
}
# Version 4 added the message's author (a user id; absent: the application's backend), only
# returned: an index of version 2 or 3 takes it in place.
_AUTHOR: dict[str, Any] = {"author": {"type": "keyword", "index": False, "doc_values": False}}
# What an index of each older version takes in place to be of this one.
_ADDED: dict[int, dict[str, Any]] = {2: {**_TIMES, **_AUTHOR}, 3: _AUTHOR}
MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "_meta": {"version": MAPPING_VERSION},
    "_source": {"excludes": ["grams1", "grams2", "grams3"]},
    "properties": {
        "chat_id": {"type": "long"},
        "number": {"type": "long"},
        "body": {"type": "text", "index": False},
        **_TIMES,
        **_AUTHOR,
        "grams3": {**_GRAMS, "index_options": "positions"},
        "grams2": {**_GRAMS, "index_options": "docs"},
        "grams1": {**_GRAMS, "index_options": "docs"},
    },
}
SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    "number_of_replicas": 0,
    "refresh_interval": "250ms",
    "sort.field": ["chat_id", "number"],
    "sort.order": ["asc", "desc"],
}
# Writes committed while a rebuild copies are copied again if they changed this long before
# it began (a transaction takes its timestamp before it commits).
_CATCH_UP_MARGIN = timedelta(seconds=60)


# The `whitespace` analyzer splits at white space (the characters `str.isspace` names).
_ESCAPED = ngrams.escapes(c for c in map(chr, range(0x3001)) if c.isspace())


def _characters(text: str) -> ngrams.Pieces:
    """The case-folded text, a token-safe piece per character."""
    return ngrams.pieces(text, _ESCAPED)


def grams(body: str) -> dict[str, str]:
    """The n-gram fields of a body."""
    c = _characters(body)
    return {
        "grams3": " ".join(ngrams.trigrams(c)),
        "grams2": " ".join(ngrams.bigrams(c)),
        "grams1": " ".join(ngrams.unigrams(c)),
    }


def term_query(term: str) -> dict[str, Any]:
    """Documents whose body holds `term` (case-insensitive substring)."""
    c = _characters(term)
    if len(c) >= 3:
        phrase = " ".join(ngrams.trigrams(c))
        return {"match_phrase": {"grams3": {"query": phrase, "analyzer": "whitespace"}}}
    return {"term": {f"grams{len(c)}": "".join(c)}}


def _unavailable(error: Exception) -> Unavailable:
    return Unavailable("search is unavailable; retry shortly")


class ElasticSearch:
    def __init__(self, url: str, index: str, shards: int = 1, replicas: int = 0) -> None:
        """`shards` and `replicas`: of the indexes it creates (a new deployment's, a
        rebuild's); an index made before keeps its own (`reindex` makes a new one)."""
        self.index_name = index  # the alias
        self._settings = {**SETTINGS, "number_of_shards": shards, "number_of_replicas": replicas}
        # Fail fast: callers answer a retryable error, and the worker parks the work.
        self._client = AsyncElasticsearch(
            url, request_timeout=10, retry_on_timeout=False, max_retries=0
        )
        self._ready = False

    async def start(self) -> None:
        """Create the index when missing; refuse an index of an older mapping. Search being
        down must not stop the process: the store goes on, and the index is created on first
        use once search answers."""
        try:
            await self._ensure_index()
        except Unavailable:
            log.warning("Elasticsearch is unavailable at start; search will catch up")

    async def _ensure_index(self) -> None:
        if self._ready:
            return
        try:
            found = await self._client.indices.get(
                index=self.index_name, ignore_unavailable=True, allow_no_indices=True
            )
            if not found:
                await self._create(self.index_name)
            else:
                for name, index in found.items():
                    version = index.get("mappings", {}).get("_meta", {}).get("version", 1)
                    if version in _ADDED:
                        await self._client.indices.put_mapping(
                            index=name,
                            properties=_ADDED[version],
                            meta={"version": MAPPING_VERSION},
                        )
                    elif version < MAPPING_VERSION:
                        raise ConfigurationError(
                            f"the search index {name} (behind {self.index_name}) has mapping "
                            f"version {version}, older than this code's {MAPPING_VERSION}: "
                            "run `graphql-chat reindex` to build the new index (searches go on "
                            "meanwhile), then start again"
                        )
        except TransportConnectionError as error:
            raise _unavailable(error) from error
        except (ApiError, TransportError) as error:
            if "resource_already_exists_exception" not in str(error):  # lost a creation race
                raise _unavailable(error) from error
        self._ready = True

    async def _create(self, alias: str | None) -> str:
        """A new index of the current mapping, named after the alias. For a new deployment
        (`alias` given) the name is fixed, so processes starting together create one index
        (the others lose the race, which is fine); a rebuild's name is new each time."""
        name = f"{self.index_name}-v{MAPPING_VERSION}"
        if alias is None:
            name += f"-{time.time_ns()}"
        aliases: dict[str, Any] | None = {alias: {}} if alias else None
        await self._client.indices.create(
            index=name, settings=self._settings, mappings=MAPPING, aliases=aliases
        )
        return name

    async def close(self) -> None:
        await self._client.close()

    async def index(self, messages: Sequence[IndexedMessage], into: str | None = None) -> None:
        if not messages:
            return
        if into is None:  # a rebuild writes its new index, whatever the alias holds now
            await self._ensure_index()
        try:
            _, errors = await async_bulk(
                self._client,
                self._actions(messages, into),
                raise_on_error=False,
                stats_only=False,
                # Under 1 MiB: aiohttp warns that larger bodies may hold the event loop.
                max_chunk_bytes=900 * 1024,
            )
        except (TransportConnectionError, TransportError, ApiError) as error:
            raise _unavailable(error) from error
        assert isinstance(errors, list)
        failed = [e for e in errors if _status(e) != 409]  # 409: a newer revision is indexed
        if failed:
            raise Unavailable(f"search indexing failed for {len(failed)} messages; retry")

    async def _actions(
        self, messages: Sequence[IndexedMessage], index: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        for m in messages:
            yield {
                "_index": index or self.index_name,
                "_id": f"{m.chat_id}:{m.number}",
                "_version": m.revision,
                "_version_type": "external",
                "_source": {
                    "chat_id": m.chat_id,
                    "number": m.number,
                    "body": m.body,
                    "created_at": micros(m.created_at),
                    "updated_at": micros(m.updated_at),
                    **({} if m.author is None else {"author": m.author}),
                    **grams(m.body),
                },
            }

    async def search(
        self,
        chat_ids: Sequence[int],
        terms: Sequence[str],
        before: int | None,
        limit: int,
        backward: bool = False,
    ) -> dict[int, list[Message]]:
        """One `_msearch` request for every chat."""
        wanted = list(dict.fromkeys(chat_ids))
        if not wanted:
            return {}
        common: list[dict[str, Any]] = []
        if before is not None:
            common.append({"range": {"number": {"gt" if backward else "lt": before}}})
        common += [term_query(t) for t in terms]
        bodies = [
            {
                "query": {"bool": {"filter": [{"term": {"chat_id": chat_id}}, *common]}},
                "sort": [{"number": "asc" if backward else "desc"}],
                "size": limit,
                "_source": ["number", "body", "created_at", "updated_at", "author"],
                "track_total_hits": False,
            }
            for chat_id in wanted
        ]
        await self._ensure_index()
        searches: list[dict[str, Any]] = []
        for body in bodies:
            searches += [{}, body]
        try:
            found = await self._client.msearch(index=self.index_name, searches=searches)
        except NotFoundError:
            return {chat_id: [] for chat_id in wanted}
        except (TransportConnectionError, TransportError, ApiError) as error:
            raise _unavailable(error) from error
        results: dict[int, list[Message]] = {}
        for chat_id, response in zip(wanted, found["responses"], strict=True):
            if "error" in response:
                if response["error"].get("type") == "index_not_found_exception":
                    results[chat_id] = []
                    continue
                raise Unavailable(f"search failed: {response['error'].get('type', 'error')}")
            results[chat_id] = [_hit(hit["_source"]) for hit in response["hits"]["hits"]]
        return results

    async def ping(self) -> None:
        try:
            await self._client.cluster.health(timeout="2s")
        except (TransportConnectionError, TransportError, ApiError) as error:
            raise _unavailable(error) from error

    async def refresh(self) -> None:
        try:
            await self._client.indices.refresh(index=self.index_name)
        except (TransportConnectionError, TransportError, ApiError) as error:
            raise _unavailable(error) from error

    async def rebuild(self, source: Catalogue, progress: Callable[[int], None]) -> int:
        """A new index from the store, while writes and searches go on: copy everything, make
        it searchable, swap the alias atomically (removing the index it pointed to, or an old
        index that bears the alias's name), then copy again what changed since the copy
        began."""
        try:
            began = await source.clock()
            new = await self._create(None)
            total = 0
            async for batch in source.iter_messages(1000):
                await self.index(batch, into=new)
                total += len(batch)
                progress(len(batch))
            # Searchable before it is searched: the alias must not point at documents the
            # index has not made visible yet (its refresh interval).
            await self._client.indices.refresh(index=new)
            replaced = await self._swap(new)
            caught_up = 0
            async for batch in source.iter_messages(1000, began - _CATCH_UP_MARGIN):
                await self.index(batch)
                caught_up += len(batch)
            log.info("reindex: %d messages changed during the copy, copied again", caught_up)
            await self.refresh()
            for name in replaced:  # searches in flight on it have had the catch-up's time
                await self._client.indices.delete(index=name, ignore_unavailable=True)
        except TransportConnectionError as error:
            raise _unavailable(error) from error
        return total

    async def _swap(self, new: str) -> list[str]:
        """Point the alias at `new`, atomically; the indices it replaced (to delete)."""
        found = await self._client.indices.get(
            index=self.index_name, ignore_unavailable=True, allow_no_indices=True
        )
        actions: list[dict[str, Any]] = []
        for name in found:
            if name == self.index_name:  # an index, not an alias, of this name: replaced
                actions.append({"remove_index": {"index": name}})
            else:
                actions.append({"remove": {"index": name, "alias": self.index_name}})
        actions.append({"add": {"index": new, "alias": self.index_name}})
        await self._client.indices.update_aliases(actions=actions)
        self._ready = False
        log.info("search index %s is live behind %s", new, self.index_name)
        return [name for name in found if name != self.index_name]

    async def drop(self) -> None:
        """Delete the indices behind the alias and any a rebuild left (a benchmark's teardown)."""
        found = await self._client.indices.get(
            index=f"{self.index_name},{self.index_name}-v*",
            ignore_unavailable=True,
            allow_no_indices=True,
        )
        for name in found:
            await self._client.indices.delete(index=name, ignore_unavailable=True)


def _hit(source: dict[str, Any]) -> Message:
    """A match as indexed; one indexed under mapping 2, without times, has `UNKNOWN_TIME`
    ones (the service reads them from the store)."""
    created, updated = source.get("created_at"), source.get("updated_at")
    return Message(
        number=source["number"],
        body=source["body"],
        created_at=UNKNOWN_TIME if created is None else instant(created),
        updated_at=UNKNOWN_TIME if updated is None else instant(updated),
        author=source.get("author"),
    )


def _status(error: dict[str, Any]) -> int:
    for outcome in error.values():
        return int(outcome.get("status", 0))
    return 0
