"""Parsed and validated documents, cached by query text; the query limits applied on a miss.

This one extension stands in for Strawberry's `MaxTokensLimiter`, `ParserCache`,
`AddValidationRules` and `ValidationCache`, for two costs found by profiling (docs/benchmarks.md,
"after the GraphQL document cache", has the figures):

- `ValidationCache` keys its cache by the parsed document, and hashing a graphql-core
  document walks every node of it, on every request; a query's text hashes in no time;
- Strawberry wraps each hook of each extension in a context manager per request: four
  extensions cost four, this costs one.

A document is checked once, right after it is parsed: first against the limits
(`graphql_chat.graphql.limits`, one linear walk), then with the standard rules; the parse
and the errors are cached with it. The cache is bounded by an estimate of the memory its
entries hold, not by their count.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection

from graphql import (
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    validate,
)
from strawberry.extensions import SchemaExtension

from graphql_chat import metrics
from graphql_chat.graphql.limits import Limits, check
from graphql_chat.graphql.persisted import NOT_IN_LIST, digest_of
from graphql_chat.logs import note

# Memory an entry holds beyond its text, per lexical token: measured with tracemalloc on
# dense documents (about 400 bytes per token), rounded up.
_BYTES_PER_TOKEN = 512
_LONG = 2048  # characters: a document longer than this is parsed in turn (`on_parse`)

# Stands in for a document refused before parsing, so that the request is answered with the
# refusal as any invalid document is (never executed: its errors are set).
_REFUSED = parse("query { __typename }")


class Documents:
    """The cache (least recently used out, bounded by an estimate of its memory in bytes)
    and the limits, one per schema."""

    def __init__(
        self,
        max_bytes: int,
        max_tokens: int,
        limits: Limits,
        paged: Collection[str],
        cache_bytes: int = 64 * 1024 * 1024,
        listed: Collection[str] | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_tokens = max_tokens
        self.limits = limits
        self.paged = frozenset(paged)
        self.cache_bytes = cache_bytes
        # The hashes of the only documents allowed to run (a persisted query list), if any.
        self.listed = None if listed is None else frozenset(listed)
        # Long documents are parsed one at a time (see `DocumentCache.on_parse`).
        self.parsing = asyncio.Lock()
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.held = 0  # the estimated bytes of the entries
        self.hits = 0
        self.misses = 0

    def get(self, query: str) -> _Entry | None:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            self.hits += 1
        return entry

    def put(self, query: str, entry: _Entry) -> None:
        self.misses += 1
        if query in self._entries or entry.size > self.cache_bytes:
            return
        self._entries[query] = entry
        self.held += entry.size
        while self.held > self.cache_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.held -= dropped.size


class _Entry:
    __slots__ = ("document", "errors", "operations", "size", "subscriptions")

    def __init__(self, document: DocumentNode, errors: list[GraphQLError], size: int) -> None:
        self.document = document
        self.errors = errors
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        self.operations = len(operations)
        # The names of its subscriptions (None: an anonymous one).
        self.subscriptions = frozenset(
            d.name.value if d.name else None
            for d in operations
            if d.operation is OperationType.SUBSCRIPTION
        )
        self.size = size


def _tokens(document: DocumentNode) -> int:
    count = 0
    token = document.loc.start_token if document.loc else None
    while token is not None:
        count += 1
        token = token.next
    return count


_HITS, _MISSES = metrics.DOCUMENTS.labels("hit"), metrics.DOCUMENTS.labels("miss")


class DocumentCache(SchemaExtension):
    def __init__(self, documents: Documents) -> None:
        self.documents = documents

    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context
        query = context.query
        listed = self.documents.listed
        if listed is not None and query is not None and digest_of(query) not in listed:
            context.pre_execution_errors = [
                GraphQLError(
                    "the operation is not in the persisted query list",
                    extensions={"code": NOT_IN_LIST},
                )
            ]
            context.graphql_document = _REFUSED
            yield
            return
        if (
            query is not None
            and len(query) > self.documents.max_bytes // 4
            and (len(query.encode("utf-8", "surrogatepass")) > self.documents.max_bytes)
        ):
            # Refused before parsing: comments and white space count too.
            context.pre_execution_errors = [
                GraphQLError(
                    f"the document is larger than {self.documents.max_bytes:,} bytes "
                    "(MAX_QUERY_BYTES)",
                    extensions={"code": "GRAPHQL_PARSE_FAILED", "limit": "MAX_QUERY_BYTES"},
                )
            ]
            context.graphql_document = _REFUSED
            yield
            return
        entry = self.documents.get(query) if query is not None else None
        (_MISSES if entry is None else _HITS).inc()
        if entry is None:
            context.parse_options["max_tokens"] = self.documents.max_tokens
            if query is not None and len(query) > _LONG:
                await self._parse_in_turn(query)
            yield  # Strawberry parses the others; a syntax error is answered and not cached
            document = context.graphql_document
            if context.pre_execution_errors:
                context.pre_execution_errors = _with_code(
                    context.pre_execution_errors, "GRAPHQL_PARSE_FAILED"
                )
                return
            if query is None or document is None:
                return
            # The limits first, in one linear walk: a document over them is not handed to
            # the standard rules, some of which cost the square of its size.
            errors = check(document, self.documents.limits, self.documents.paged)
            if not errors:
                errors = _with_code(
                    validate(context.schema._schema, document, context.validation_rules),
                    "GRAPHQL_VALIDATION_FAILED",
                )
            entry = _Entry(document, errors, len(query) + _BYTES_PER_TOKEN * _tokens(document))
            self.documents.put(query, entry)
            self._use(entry)
        else:
            # Strawberry neither parses a document that is set nor validates one whose
            # validation errors (possibly none) are set.
            self._use(entry)
            yield

    async def _parse_in_turn(self, query: str) -> None:
        """Parse a long document (pure Python, up to tens of milliseconds) one at a time,
        and only after whatever was ready to run has run: requests that arrive while one is
        parsed wait for that one, not for every long document sent before them."""
        context = self.execution_context
        async with self.documents.parsing:
            await asyncio.sleep(0)  # the others queue on the lock; the rest runs first
            try:
                context.graphql_document = parse(query, max_tokens=self.documents.max_tokens)
            except GraphQLError as error:
                context.pre_execution_errors = [error]
                context.graphql_document = _REFUSED

    def _use(self, entry: _Entry) -> None:
        context = self.execution_context
        context.graphql_document = entry.document
        context.pre_execution_errors = entry.errors
        note("operation", metrics.operation_label(context.operation_name))
        # Strawberry's `operation_name` falls back to the first operation's: ask what the
        # request named.
        named = context._provided_operation_name
        if (
            not entry.errors
            and entry.subscriptions
            and getattr(context.context, "websocket", None) is None
            and (named in entry.subscriptions or (named is None and entry.operations == 1))
        ):
            context.pre_execution_errors = [
                GraphQLError(
                    "subscriptions are served over WebSocket at /graphql "
                    "(the graphql-transport-ws protocol)",
                    extensions={"code": "BAD_REQUEST"},
                )
            ]
        elif not entry.errors and entry.operations > 1 and named is None:
            context.pre_execution_errors = [
                GraphQLError(
                    "the document holds several operations: operationName must name one",
                    extensions={"code": "GRAPHQL_VALIDATION_FAILED"},
                )
            ]


def _with_code(errors: list[GraphQLError], code: str) -> list[GraphQLError]:
    """The errors, each with `extensions.code` (unless it has one already)."""
    for error in errors:
        if not (error.extensions or {}).get("code"):
            error.extensions = {**(error.extensions or {}), "code": code}
    return errors
