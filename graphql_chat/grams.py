"""The n-grams both search indexes are built on.

Search is case-insensitive substring matching. Text is case-folded with Python's `str.lower`,
then cut into overlapping windows of one, two and three characters. A term of three
characters or more occurs in a body exactly when the term's trigrams occur in the body's
trigram sequence at consecutive positions (a phrase); a shorter term is one of the body's
unigrams or bigrams. Each gram is one token of the backend's tokenizer.

A tokenizer splits text at some characters (white space for Elasticsearch's `whitespace`
analyzer, control characters for the FTS5 tokenizer the SQLite index declares). Each backend
names those; inside a gram they are written as an escape (`ESCAPE`, the code point in hex,
`END`), and so are the escape characters themselves, so that distinct grams stay distinct
tokens. Text without any of them (nearly all text) is its own sequence of pieces.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise

ESCAPE, END = "\ue000", "\ue001"  # private-use characters

Pieces = str | list[str]


def escapes(separators: Iterable[str]) -> dict[str, str]:
    """The escape of each character a tokenizer would split a gram at."""
    return {c: f"{ESCAPE}{ord(c):x}{END}" for c in [*separators, ESCAPE, END]}


def pieces(text: str, escaped: Mapping[str, str]) -> Pieces:
    """The case-folded text, one token-safe piece per character."""
    lowered = text.lower()
    if not any(c in lowered for c in escaped):
        return lowered
    return [escaped.get(c, c) for c in lowered]


def trigrams(p: Pieces) -> list[str]:
    """Every three-character window, in order (positions matter for phrases)."""
    if isinstance(p, str):
        return [p[i : i + 3] for i in range(len(p) - 2)]
    return [a + b + c for a, b, c in zip(p, p[1:], p[2:], strict=False)]


def bigrams(p: Pieces) -> set[str]:
    if isinstance(p, str):
        return {p[i : i + 2] for i in range(len(p) - 1)}
    return {a + b for a, b in pairwise(p)}


def unigrams(p: Sequence[str]) -> set[str]:
    return set(p)
