"""ASGI middleware: the request body limit, trailing slashes, and each request's id, log
line and metrics."""

from __future__ import annotations

import logging
import os
import re
import time

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graphql_chat import logs, metrics, tracing
from graphql_chat.errors import TooLarge
from graphql_chat.logs import log_event
from graphql_chat.web.responses import too_large

DRAIN_BYTES = 8 * 1024 * 1024  # read and discarded from an oversized body before the 413


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, whether announced or streamed.

    The rest of the body (up to `DRAIN_BYTES`) is read and discarded before the answer, so
    that a client that sends its whole body before reading sees the 413 rather than a
    connection reset; past that, the connection is closed.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._refuse(scope, receive, send, int(value) if value.isdigit() else 0)
                    return
                # The server frames the body by its announced length: nothing to count.
                await self.app(scope, receive, send)
                return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise TooLarge(f"the request body is larger than {self.limit} bytes")
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except TooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send, DRAIN_BYTES, drained=received)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, announced: int, drained: int = 0
    ) -> None:
        if announced <= DRAIN_BYTES:
            more = True
            while more and drained <= DRAIN_BYTES:
                message = await receive()
                if message["type"] != "http.request":
                    break
                drained += len(message.get("body", b""))
                more = message.get("more_body", False)
        response = too_large(self.limit, scope["path"].startswith("/graphql"))
        response.headers["connection"] = "close"
        await response(scope, receive, send)


class TrailingSlash:
    """`/api/v1/applications/` is `/api/v1/applications`: routed as is, never redirected (a
    redirect would build its `Location` from the request's `Host` header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


class Observed:
    """Each HTTP request gets an id (the client's `X-Request-ID` if it is a plausible one,
    else a new one), echoed in the answer and on every log line written meanwhile; then one
    log line and its metrics (`graphql_chat.metrics`), whatever the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = _header(scope, b"x-request-id")
        rid = given if given is not None and _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        reset = logs.request_id.set(rid)
        notes = logs.begin_notes()
        echoed = (b"x-request-id", rid.encode())
        status = 500
        span = None
        if tracing.on:
            span = tracing.tracer.start_span(
                f"HTTP {scope['method']}",
                context=tracing.incoming(scope["headers"]),
                kind=SpanKind.SERVER,
            )
            attached = otel_context.attach(trace.set_span_in_context(span))

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echoed]}
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            seconds = time.perf_counter() - started
            interface, operation = _operation(scope, notes)
            outcome = notes.get("outcome") or ("ok" if status < 400 else f"HTTP_{status}")
            metrics.request_answered(interface, operation, outcome, seconds)
            log_event(
                _log,
                "request",
                interface=interface,
                operation=operation,
                method=scope["method"],
                status=status,
                outcome=outcome,
                duration_ms=round(seconds * 1000, 3),
            )
            logs.request_id.reset(reset)
            if span is not None:
                _end(span, scope, interface, operation, status, outcome, rid)
                otel_context.detach(attached)


_log = logging.getLogger("graphql_chat.request")
# What an id from a client may be: what proxies and tracers send (UUIDs, hex, base64url,
# dotted or colon-separated ids), short enough for a log line.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
_INTERFACES = (("/graphql", "graphql"), ("/api/", "rest"), ("/health", "health"))


def _end(
    span: Span,
    scope: Scope,
    interface: str,
    operation: str,
    status: int,
    outcome: str,
    rid: str,
) -> None:
    span.update_name(f"graphql {operation}" if interface == "graphql" else operation)
    span.set_attribute("http.request.method", scope["method"])
    span.set_attribute("http.response.status_code", status)
    span.set_attribute("graphql_chat.outcome", outcome)
    span.set_attribute("graphql_chat.request_id", rid)
    if interface == "graphql":
        span.set_attribute("graphql.operation.name", operation)
    elif interface == "rest":
        span.set_attribute("http.route", operation.partition(" ")[2])
    if status >= 500:
        span.set_status(StatusCode.ERROR, outcome)
    span.end()


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _operation(scope: Scope, notes: dict[str, str]) -> tuple[str, str]:
    path: str = scope["path"]
    if path == "/metrics":
        return "metrics", "GET /metrics"
    interface = next((name for prefix, name in _INTERFACES if path.startswith(prefix)), "other")
    if interface == "graphql":
        return interface, notes.get("operation", "none")
    route = scope.get("route")
    template = getattr(route, "path", None)
    return interface, f"{scope['method']} {template}" if template else "unrouted"
