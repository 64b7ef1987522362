"""Document limits: measured in one linear walk, before anything runs."""

from __future__ import annotations

import time

import pytest
from graphql import parse
from graphql.utilities import get_introspection_query

from graphql_chat.graphql.limits import Limits, check, measure

LIMITS = Limits(
    max_depth=10,
    max_fields=500,
    max_aliases=15,
    max_cost=100_000,
    default_page_size=20,
    max_page_size=100,
)
PAGED = {"applications", "chats", "messages", "searchMessages"}


def _measured(query: str) -> tuple[int, int, int, int]:
    found = measure(parse(query), LIMITS, PAGED)[None]
    return found.depth, found.fields, found.aliases, found.cost


def test_depth_fields_and_cost_of_a_nested_page() -> None:
    query = """{ application(token: "t") { chats(first: 10) {
        nodes { number messages(first: 50) { nodes { number body } } } } } }"""
    depth, fields, aliases, cost = _measured(query)
    assert (depth, fields, aliases) == (6, 8, 0)
    # application (chats, 10 times: nodes (number, messages, 50 times: nodes (number, body)))
    assert cost == 1 + (1 + 10 * (1 + (1 + (1 + 50 * (1 + (1 + 1))))))


def test_variables_and_missing_first_count_as_the_page_sizes() -> None:
    with_variable = "query($n: Int) { applications(first: $n) { nodes { name } } }"
    without = "{ applications { nodes { name } } }"
    over_max = "{ applications(first: 100000) { nodes { name } } }"
    assert _measured(with_variable)[3] == 1 + 100 * 2
    assert _measured(without)[3] == 1 + 20 * 2
    assert _measured(over_max)[3] == 1 + 100 * 2


def test_fragments_are_expanded_and_measured_once() -> None:
    fragments = "".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }} " for i in range(30))
    bomb = "query { ...F0 } " + fragments + "fragment F30 on Query { __typename }"
    started = time.perf_counter()
    errors = check(parse(bomb), LIMITS, PAGED)
    assert time.perf_counter() - started < 0.05
    assert [(e.extensions or {}).get("limit") for e in errors] == [
        "MAX_QUERY_FIELDS",
        "MAX_QUERY_COST",
    ]
    assert "more than 100,000,000" in errors[0].message


@pytest.mark.parametrize(
    ("query", "limit"),
    [
        ("{" + " ".join(["__typename"] * 1000) + "}", "MAX_QUERY_FIELDS"),
        ("{" + " ".join(f"a{i}: __typename" for i in range(16)) + "}", "MAX_QUERY_ALIASES"),
        ("{ a { b { c { d { e { f { g { h { i { j { k } } } } } } } } } } }", "MAX_QUERY_DEPTH"),
        (
            "{ applications(first: 100) { nodes { chats(first: 100) { nodes { "
            "messages(first: 100) { nodes { body } } } } } } }",
            "MAX_QUERY_COST",
        ),
        (
            "{ __schema { types { fields { type { fields { type { fields { type { fields "
            "{ name } } } } } } } } } }",
            "MAX_QUERY_COST",
        ),
    ],
)
def test_each_limit_is_named_with_its_value(query: str, limit: str) -> None:
    errors = check(parse(query), LIMITS, PAGED)
    assert [(e.extensions or {}).get("limit") for e in errors] == [limit]
    assert (errors[0].extensions or {}).get("code") == "GRAPHQL_VALIDATION_FAILED"
    assert limit in errors[0].message


def test_the_playground_introspection_query_is_within_the_limits() -> None:
    assert check(parse(get_introspection_query(descriptions=True)), LIMITS, PAGED) == []


def test_inline_fragments_and_named_operations() -> None:
    query = """query A { ... on Query { applications(first: 2) { nodes { name } } } }
        query B { __typename }"""
    found = measure(parse(query), LIMITS, PAGED)
    assert (found["A"].cost, found["B"].cost) == (1 + 2 * 2, 1)
