"""Automatic persisted queries, the protocol Apollo Client and urql speak.

A request may send `extensions.persistedQuery = {"version": 1, "sha256Hash": HASH}` instead
of its `query`. A server that knows the hash runs the document it stands for; one that does
not answers `PersistedQueryNotFound`, and the client sends the document once with the hash,
which is checked and kept. Reads can then go out as GET requests of a few hundred bytes that
a CDN can cache.

The documents are kept per process, bounded by their total size: a client that meets
another API process sends its document once more there.

With a manifest (`PERSISTED_QUERIES_MANIFEST`, the JSON Apollo's
`generate-persisted-query-manifest` writes from a frontend's documents), the server runs only
the operations it lists: by hash, or by a document whose hash it lists, over HTTP and over
WebSocket alike; anything else is refused with `PERSISTED_QUERY_NOT_IN_LIST`.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import orjson
from cross_web import HTTPException

from graphql_chat.errors import ConfigurationError

_HASH = re.compile(r"[0-9a-f]{64}")


class Refused(HTTPException):
    """A request the server answers with a GraphQL error of this code, before running it."""

    def __init__(self, status_code: int, reason: str, code: str) -> None:
        super().__init__(status_code, reason)
        self.code = code


NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"


def digest_of(query: str) -> str:
    return hashlib.sha256(query.encode("utf-8", "surrogatepass")).hexdigest()


def load_manifest(path: str) -> dict[str, str]:
    """The operations of an Apollo persisted query manifest, by hash; refuses to start on a
    file that is not one, or whose hashes do not match their documents."""
    try:
        manifest = orjson.loads(Path(path).read_bytes())
        if manifest.get("format") != "apollo-persisted-query-manifest":
            raise ValueError("its format is not apollo-persisted-query-manifest")
        operations = {op["id"]: op["body"] for op in manifest["operations"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConfigurationError(
            f"PERSISTED_QUERIES_MANIFEST {path} is not a persisted query manifest: {error}"
        ) from None
    for digest, body in operations.items():
        if not isinstance(body, str) or digest_of(body) != digest:
            raise ConfigurationError(
                f"PERSISTED_QUERIES_MANIFEST {path}: operation {digest} does not hash to its id"
            )
    return operations


class PersistedQueries:
    def __init__(self, max_bytes: int, listed: dict[str, str] | None = None) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._documents: OrderedDict[str, str] = OrderedDict()
        self._listed = listed  # the manifest's operations: only these run

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
        if self._listed is not None:
            listed = self._listed.get(digest)
            if listed is None or (query is not None and digest_of(query) != digest):
                raise Refused(400, "the operation is not in the persisted query list", NOT_IN_LIST)
            return listed
        if query is None:
            found = self._documents.get(digest)
            if found is None:
                raise Refused(200, "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
            self._documents.move_to_end(digest)
            return found
        if digest_of(query) != digest:
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
