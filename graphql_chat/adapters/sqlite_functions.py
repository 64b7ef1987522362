"""The SQL functions every SQLite connection of the product registers.

The search index `message_grams` is a contentless FTS5 table kept by triggers on `messages`
(see the Alembic history): a trigger calls `chat_grams(body)` for the tokens of a body, so any
connection that writes messages must have it, the migrations' included.

The index's tokenizer (`TOKENIZE`) keeps every character in a token except the ASCII control
characters, which separate tokens. A document is the body's n-grams (`graphql_chat.grams`,
control characters inside a gram escaped): the trigrams in order, then the distinct bigrams
and characters, one per line. A term's trigrams at consecutive positions are exactly the term
as a substring; a gram's length in characters tells the three kinds apart.

A contentless table forgets its documents: deleting one needs the tokens it was given, which
the trigger makes again from the old body. So the tokens of a body must not change while it is
indexed: `GRAMS_VERSION` names this encoding, and the index records it with the Unicode version
`str.lower` followed; a process refuses to start on an index built otherwise, and
`graphql-chat reindex` rebuilds it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from graphql_chat import grams

GRAMS_VERSION = 1
UNICODE_VERSION = unicodedata.unidata_version

_CONTROL = [chr(c) for c in [*range(0x20), 0x7F]]
_PUNCTUATION = "".join(chr(c) for c in range(0x20, 0x7F) if not chr(c).isalnum())
# FTS5's `ascii` tokenizer: ASCII letters and digits, every non-ASCII character, and these.
TOKENIZE = "ascii tokenchars '{}'".format(_PUNCTUATION.replace("'", "''"))
_ESCAPED = grams.escapes(_CONTROL)


def document(body: str | None) -> str:
    """SQL function `chat_grams(body)`: the tokens indexed for a body."""
    if body is None:
        return ""
    p = grams.pieces(body, _ESCAPED)
    return "\n".join([*grams.trigrams(p), *grams.bigrams(p), *grams.unigrams(p)])


def match(terms: Sequence[str]) -> str:
    """The FTS5 query for rows holding every term (each a case-insensitive substring)."""
    phrases = []
    for term in terms:
        p = grams.pieces(term, _ESCAPED)
        tokens = grams.trigrams(p) if len(p) >= 3 else ["".join(p)]
        phrases.append('"' + "\n".join(tokens).replace('"', '""') + '"')
    return " AND ".join(phrases)


def register(dbapi_connection: Any) -> None:
    """Make the functions the triggers call available on a new connection."""
    dbapi_connection.create_function("chat_grams", 1, document, deterministic=True)
