"""Rules on input, cursors, tokens and event serialisation: pure functions, no I/O."""

from __future__ import annotations

import uuid

import pytest

from graphql_chat.adapters.rabbitmq.wire import event_from_dict, event_to_dict
from graphql_chat.domain import (
    ChatCreated,
    MessageWritten,
    ReadMarked,
    clean_body,
    clean_name,
    decode_cursor,
    encode_cursor,
    new_token,
    page_size,
    parse_number,
    search_terms,
)
from graphql_chat.errors import InvalidInput


def test_cursors_round_trip_and_are_kind_checked() -> None:
    cursor = encode_cursor("message", 42)
    assert "42" not in cursor
    assert decode_cursor("message", cursor) == 42
    assert decode_cursor("message", None) is None
    for bad in ("", "!!!", encode_cursor("chat", 42), "bWVzc2FnZTp4"):
        with pytest.raises(InvalidInput):
            decode_cursor("message", bad)
    # An inbox cursor carries a time and a row id in one key, wider than a row id alone.
    wide = (1_796_000_000_000_000 << 64) | 12345
    assert decode_cursor("inbox", encode_cursor("inbox", wide)) == wide
    with pytest.raises(InvalidInput):
        decode_cursor("inbox", encode_cursor("inbox", 2**127))
    with pytest.raises(InvalidInput):
        decode_cursor("message", encode_cursor("message", wide))


@pytest.mark.parametrize("value", ["1", "42", 7])
def test_numbers_accept_positive_integers(value: object) -> None:
    assert parse_number(value, "n") == int(str(value))


NOT_NUMBERS = ["0", "-1", "1.5", "one", "", "\u0661", True, None, 2**60, "9" * 30]


@pytest.mark.parametrize("value", NOT_NUMBERS)
def test_numbers_refuse_everything_else(value: object) -> None:
    with pytest.raises(InvalidInput):
        parse_number(value, "n")


def test_text_rules() -> None:
    assert clean_body("é" * 10, 10) == "é" * 10
    for bad in (None, "", "   ", 3, "x" * 11, "a\x00b"):
        with pytest.raises(InvalidInput):
            clean_name(bad, 10)


def test_search_terms_split_on_white_space() -> None:
    assert search_terms("  hello\tWORLD \n", 100) == ["hello", "WORLD"]
    for bad in ("", "   ", None, "x" * 101):
        with pytest.raises(InvalidInput):
            search_terms(bad, 100)


def test_page_size_bounds() -> None:
    assert page_size(None, 20, 100) == 20
    assert page_size(100, 20, 100) == 100
    for bad in (0, 101, -1, "5", True):
        with pytest.raises(InvalidInput):
            page_size(bad, 20, 100)


def test_tokens_are_random_v4_uuids() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    assert all(uuid.UUID(t).version == 4 for t in tokens)


def test_events_survive_serialisation() -> None:
    for event in (
        ChatCreated(3, 4),
        MessageWritten(1, 2, 3, "héllo", 99),
        MessageWritten(1, 2, 3, "hi", 99, created=True, author="ada 😀"),
        ReadMarked(1, 2, "ada 😀", 7, 1_796_000_000_000_000),
        ReadMarked(1, 2, "bob", 0, 1_796_000_000_000_001, back=True),
    ):
        assert event_from_dict(event_to_dict(event)) == event
    # A message without an author says nothing of one on the wire (as before authors).
    assert "u" not in event_to_dict(MessageWritten(1, 2, 3, "héllo", 99))
