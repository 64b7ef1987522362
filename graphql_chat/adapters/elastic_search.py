"""The search port on Elasticsearch (official async client).

Mapping: a `keyword` field with the built-in `lowercase` normalizer holding the body in
overlapping chunks, searched with one `wildcard` query `*term*` per term (user `*`, `?` and `\\`
escaped), filtered by chat, sorted by number descending. This works on every Elasticsearch
distribution, including the integration-test one without the `analysis-common` module (no
ngram analyzers) and without the `wildcard` field type.

Keyword terms are limited to 32,766 bytes, so bodies are indexed as chunks of
`CHUNK` characters overlapping by `MAX_TERM_LENGTH`: any term up to that length lies whole
inside some chunk. Documents carry the message's revision as an external version, so
replays and out-of-order writes never let an older body replace a newer one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TransportError
from elasticsearch import ApiError, AsyncElasticsearch, NotFoundError
from elasticsearch.helpers import async_bulk

from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import MAX_TERM_LENGTH, Message
from graphql_chat.errors import Unavailable
from graphql_chat.ports import IndexedMessage

log = logging.getLogger(__name__)

CHUNK = 8_000  # characters: at most 4 bytes each in UTF-8, under the 32,766-byte term limit
STEP = CHUNK - MAX_TERM_LENGTH

MAPPING: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "chat_id": {"type": "long"},
        "number": {"type": "long"},
        "body": {"type": "text", "index": False},
        "body_chunks": {"type": "keyword", "normalizer": "lowercase", "doc_values": False},
    },
}
SETTINGS: dict[str, Any] = {
    "number_of_shards": 1,
    "number_of_replicas": 0,
    "refresh_interval": "250ms",
}


def chunks(body: str) -> list[str]:
    if len(body) <= CHUNK:
        return [body]
    return [body[i : i + CHUNK] for i in range(0, len(body) - MAX_TERM_LENGTH, STEP)]


def _wildcard(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    return f"*{escaped}*"


def _unavailable(error: Exception) -> Unavailable:
    return Unavailable("search is unavailable; retry shortly")


class ElasticSearch:
    def __init__(self, url: str, index: str, store: SqlStore) -> None:
        self.index_name = index
        # Fail fast: callers answer a retryable error, and the worker parks the work.
        self._client = AsyncElasticsearch(
            url, request_timeout=10, retry_on_timeout=False, max_retries=0
        )
        self._store = store
        self._ready = False

    async def start(self) -> None:
        """Create the index when missing. Search being down must not stop the process: the
        store goes on, and the index is created on first use once search answers."""
        try:
            await self._ensure_index()
        except Unavailable:
            log.warning("Elasticsearch is unavailable at start; search will catch up")

    async def _ensure_index(self) -> None:
        if self._ready:
            return
        try:
            if not await self._client.indices.exists(index=self.index_name):
                await self._client.indices.create(
                    index=self.index_name, settings=SETTINGS, mappings=MAPPING
                )
        except TransportConnectionError as error:
            raise _unavailable(error) from error
        except (ApiError, TransportError) as error:
            if "resource_already_exists_exception" not in str(error):  # lost a creation race
                raise _unavailable(error) from error
        self._ready = True

    async def close(self) -> None:
        await self._client.close()

    async def index(self, messages: Sequence[IndexedMessage]) -> None:
        if not messages:
            return
        await self._ensure_index()
        try:
            _, errors = await async_bulk(
                self._client, self._actions(messages), raise_on_error=False, stats_only=False
            )
        except (TransportConnectionError, TransportError, ApiError) as error:
            raise _unavailable(error) from error
        assert isinstance(errors, list)
        failed = [e for e in errors if _status(e) != 409]  # 409: a newer revision is indexed
        if failed:
            raise Unavailable(f"search indexing failed for {len(failed)} messages; retry")

    async def _actions(self, messages: Sequence[IndexedMessage]) -> AsyncIterator[dict[str, Any]]:
        for m in messages:
            yield {
                "_index": self.index_name,
                "_id": f"{m.chat_id}:{m.number}",
                "_version": m.revision,
                "_version_type": "external",
                "_source": {
                    "chat_id": m.chat_id,
                    "number": m.number,
                    "body": m.body,
                    "body_chunks": chunks(m.body),
                },
            }

    async def search(
        self, chat_ids: Sequence[int], terms: Sequence[str], before: int | None, limit: int
    ) -> dict[int, list[Message]]:
        """One `_msearch` request for every chat."""
        wanted = list(dict.fromkeys(chat_ids))
        if not wanted:
            return {}
        common: list[dict[str, Any]] = []
        if before is not None:
            common.append({"range": {"number": {"lt": before}}})
        common += [{"wildcard": {"body_chunks": {"value": _wildcard(t)}}} for t in terms]
        bodies = [
            {
                "query": {"bool": {"filter": [{"term": {"chat_id": chat_id}}, *common]}},
                "sort": [{"number": "desc"}],
                "size": limit,
                "_source": ["number", "body"],
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
            results[chat_id] = [
                Message(number=hit["_source"]["number"], body=hit["_source"]["body"])
                for hit in response["hits"]["hits"]
            ]
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

    async def rebuild(self, progress: Callable[[int], None]) -> int:
        total = 0
        async for batch in self._store.iter_messages(1000):
            await self.index(batch)
            total += len(batch)
            progress(len(batch))
        await self.refresh()
        return total

    async def drop(self) -> None:
        await self._client.indices.delete(index=self.index_name, ignore_unavailable=True)


def _status(error: dict[str, Any]) -> int:
    for outcome in error.values():
        return int(outcome.get("status", 0))
    return 0
