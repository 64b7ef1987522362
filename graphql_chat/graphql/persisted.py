"""Automatic persisted queries, the protocol Apollo Client and urql speak.

A request may send `extensions.persistedQuery = {"version": 1, "sha256Hash": HASH}` instead
of its `query`. A server that knows the hash runs the document it stands for; one that does
not answers `PersistedQueryNotFound`, and the client sends the document once with the hash,
which is checked and kept. Reads can then go out as GET requests of a few hundred bytes that
a CDN can cache.

The documents are kept per process, bounded by their total size: a client that meets
another API process sends its document once more there.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from typing import Any

from cross_web import HTTPException

_HASH = re.compile(r"[0-9a-f]{64}")


class Refused(HTTPException):
    """A request the server answers with a GraphQL error of this code, before running it."""

    def __init__(self, status_code: int, reason: str, code: str) -> None:
        super().__init__(status_code, reason)
        self.code = code


class PersistedQueries:
    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._documents: OrderedDict[str, str] = OrderedDict()

    def resolve(self, query: str | None, extensions: dict[str, Any] | None) -> str | None:
        """The document to run: `query` itself, or the one its hash names."""
        persisted = (extensions or {}).get("persistedQuery")
        if persisted is None:
            return query
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise Refused(400, "Unsupported persisted query version", "BAD_REQUEST")
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or not _HASH.fullmatch(digest):
            raise Refused(400, "sha256Hash must be 64 lowercase hex digits", "BAD_REQUEST")
        if query is None:
            found = self._documents.get(digest)
            if found is None:
                raise Refused(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            self._documents.move_to_end(digest)
            return found
        actual = hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()
        if actual != digest:
            raise Refused(400, "provided sha does not match query", "BAD_REQUEST")
        self._keep(digest, query)
        return query

    def _keep(self, digest: str, query: str) -> None:
        if digest in self._documents:
            self._documents.move_to_end(digest)
            return
        self._documents[digest] = query
        self._bytes += len(query)
        while self._bytes > self._max_bytes and self._documents:
            _, dropped = self._documents.popitem(last=False)
            self._bytes -= len(dropped)
