"""Request ids, the request log line and the metrics, through the ASGI app, in both modes (the
distributed mode's worker runs in the test's process, so its series are scraped with the
API's)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from graphql_chat import tracing
from graphql_chat.app import create_app
from graphql_chat.config import Settings
from tests.metrics_text import Samples, samples, value

SEND = """mutation Send($t: String!, $b: String!) {
  createMessage(input: {applicationToken: $t, chatNumber: 1, body: $b}) { message { number } }
}"""


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


async def _chat(http: httpx.AsyncClient) -> str:
    token: str = (await http.post("/api/v1/applications", json={"name": "o"})).json()["token"]
    await http.post(f"/api/v1/applications/{token}/chats", json={})
    return token


async def test_a_create_moves_its_series(http: httpx.AsyncClient) -> None:
    token = await _chat(http)
    before = await scrape(http)
    for i in range(3):
        answer = await http.post(
            "/graphql", json={"query": SEND, "variables": {"t": token, "b": f"m{i}"}}
        )
        assert answer.json()["data"]["createMessage"]["message"]["number"] == i + 1
    rest = await http.post(f"/api/v1/applications/{token}/chats/1/messages", json={"body": "r"})
    assert rest.status_code == 201
    missing = await http.get("/api/v1/applications/not-a-token/chats/1/messages")
    assert missing.status_code == 404
    after = await scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        moved("graphql_chat_requests_total", interface="graphql", operation="Send", outcome="ok")
        == 3
    )
    created = "POST /api/v1/applications/{token}/chats/{chat}/messages"
    assert (
        moved("graphql_chat_requests_total", interface="rest", operation=created, outcome="ok") == 1
    )
    listed = "GET /api/v1/applications/{token}/chats/{chat}/messages"
    assert (
        moved(
            "graphql_chat_requests_total", interface="rest", operation=listed, outcome="NOT_FOUND"
        )
        == 1
    )
    assert (
        moved("graphql_chat_request_duration_seconds_count", interface="graphql", operation="Send")
        == 3
    )
    # The first Send was parsed, the two others came from the document cache.
    assert moved("graphql_chat_graphql_documents_total", result="miss") == 1
    assert moved("graphql_chat_graphql_documents_total", result="hit") == 2
    # Each create was committed in a batch, stored and indexed, some time after its acceptance.
    assert moved("graphql_chat_batch_events_sum") >= 4
    assert moved("graphql_chat_commit_duration_seconds_count") >= 1
    assert moved("graphql_chat_persistence_lag_seconds_count", stage="stored") >= 4
    assert moved("graphql_chat_persistence_lag_seconds_count", stage="searchable") >= 4
    assert value(after, "graphql_chat_dependency_up", dependency="store") == 1
    assert value(after, "graphql_chat_numbering_recovering") == 0


async def test_a_request_id_is_echoed_and_on_its_log_line(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    token = await _chat(http)
    with caplog.at_level(logging.INFO, logger="graphql_chat.request"):
        given = await http.post(
            "/graphql",
            json={"query": SEND, "variables": {"t": token, "b": "x"}},
            headers={"X-Request-ID": "client-id.42:a/b=+"},
        )
        made = await http.get(f"/api/v1/applications/{token}/chats/1/messages")
        refused = await http.get("/health", headers={"X-Request-ID": "a b" * 10})
        long = await http.get("/health", headers={"X-Request-ID": "a" * 129})
    assert given.headers["x-request-id"] == "client-id.42:a/b=+"
    for answer in (made, refused, long):
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"]), answer.headers
    lines = {
        getattr(r, "request_id", None): r.__dict__ for r in caplog.records if r.message == "request"
    }
    line = lines["client-id.42:a/b=+"]
    fields = (line["interface"], line["operation"], line["status"], line["outcome"])
    assert fields == ("graphql", "Send", 200, "ok")
    assert line["duration_ms"] > 0
    assert lines[made.headers["x-request-id"]]["status"] == 200


async def test_operation_labels_are_bounded_whatever_clients_name(http: httpx.AsyncClient) -> None:
    """Operation names are the client's: past the first 200 a process has seen, and for
    names that are not GraphQL names, the label is `other`."""
    for n in range(230):
        await http.post("/graphql", json={"query": f"query Op{n}x {{ __typename }}"})
    samples = await scrape(http)
    operations = {
        dict(labels)["operation"]
        for (name, labels) in samples
        if name == "graphql_chat_requests_total" and dict(labels)["interface"] == "graphql"
    }
    assert "other" in operations
    assert len(operations - {"other", "anonymous", "none"}) <= 200


async def test_metrics_need_the_admin_token_off_loopback(settings: Settings) -> None:
    """They tell every operation's name and rate: off loopback, only with ADMIN_TOKEN."""
    for admin, headers, status in (
        (None, {}, 403),
        ("s3cret", {}, 401),
        ("s3cret", {"Authorization": "Bearer wrong"}, 403),
        ("s3cret", {"Authorization": "Bearer s3cret"}, 200),
    ):
        app = create_app(
            settings.model_copy(update={"host": "0.0.0.0", "admin_token": admin}), migrate=False
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://testserver"
            ) as client,
        ):
            answer = await client.get("/metrics", headers=headers)
            assert answer.status_code == status, (admin, headers, answer.text)
            if status != 200:
                assert "graphql_chat" not in answer.text


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.stop()
    provider.shutdown()


@pytest.mark.parametrize("http", ["distributed"], indirect=True)
async def test_one_trace_follows_a_create_from_request_to_index(
    http: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    """The request's span, the publish it waited for, the worker's commit and index of it:
    one trace, each the child of the one before (commit and index of the publish), with the
    client's own trace as the request's parent."""
    token = await _chat(http)
    spans.clear()
    client_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{client_trace}-00f067aa0ba902b7-01"
    created = await http.post(
        f"/api/v1/applications/{token}/chats/1/messages",
        json={"body": "traced"},
        headers={"traceparent": parent},
    )
    assert created.status_code == 201
    deadline = asyncio.get_running_loop().time() + 10
    while asyncio.get_running_loop().time() < deadline:
        names = {s.name for s in spans.get_finished_spans()}
        if {"graphql-chat commit", "graphql-chat index"} <= names:
            break
        await asyncio.sleep(0.05)
    by_name = {s.name: s for s in spans.get_finished_spans()}
    request = by_name["POST /api/v1/applications/{token}/chats/{chat}/messages"]
    publish = by_name["graphql-chat publish"]
    commit, index = by_name["graphql-chat commit"], by_name["graphql-chat index"]
    assert request.kind is SpanKind.SERVER and publish.kind is SpanKind.PRODUCER
    assert format(request.context.trace_id, "032x") == client_trace
    assert (
        request.parent is not None and format(request.parent.span_id, "016x") == "00f067aa0ba902b7"
    )
    assert {s.context.trace_id for s in (request, publish, commit, index)} == {
        request.context.trace_id
    }
    assert publish.parent is not None and publish.parent.span_id == request.context.span_id
    for worker_span in (commit, index):
        assert worker_span.parent is not None
        assert worker_span.parent.span_id == publish.context.span_id
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 201
    assert token not in str(request.attributes) and token not in request.name
    assert commit.start_time is not None and publish.start_time is not None
    assert commit.start_time >= publish.start_time


async def test_traces_are_off_without_an_endpoint(http: httpx.AsyncClient) -> None:
    """Nothing is traced unless asked: no exporter, no spans made on the request path."""
    assert not tracing.on
    token = await _chat(http)
    answer = await http.post(f"/api/v1/applications/{token}/chats/1/messages", json={"body": "x"})
    assert answer.status_code == 201 and "traceparent" not in answer.headers
