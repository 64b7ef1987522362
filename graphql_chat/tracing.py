"""OpenTelemetry traces, on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (spans go there over
OTLP/HTTP; the SDK's own variables configure the rest: `OTEL_SERVICE_NAME`,
`OTEL_TRACES_SAMPLER`, `OTEL_RESOURCE_ATTRIBUTES`, ...). Off, nothing on the hot path
touches OpenTelemetry.

One write's trace: the request's server span (`POST /api/v1/applications/{token}/...`, or the
GraphQL operation; a `traceparent` header from the client is its parent), then, distributed,
`graphql-chat publish` while the write waits for the broker's confirm, then in the worker
`graphql-chat commit` and `graphql-chat index`, children of the publish span. Writes travel
many to a broker message: the message's `traceparents` header holds each one's context, in
the order of its events, so each trace gets its own spans even when they share a batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Tracer

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
tracer: Tracer = trace.get_tracer("graphql_chat")
on = False


def configure(service: str) -> None:
    """Export spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (`service`: the default
    `service.name`, `OTEL_SERVICE_NAME` wins)."""
    if not os.environ.get(ENDPOINT):
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)


def use(provider: Any) -> None:
    """Trace to `provider` from now on (`configure`, or a test's in-memory one)."""
    global tracer, on
    tracer = provider.get_tracer("graphql_chat")
    on = True


def stop() -> None:
    global tracer, on
    tracer, on = trace.get_tracer("graphql_chat"), False


def incoming(headers: Sequence[tuple[bytes, bytes]]) -> Context:
    """The context a request's `traceparent` (W3C) names, if any."""
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name in (b"traceparent", b"tracestate")
    }
    return propagate.extract(carrier)


def current_parent() -> str:
    """The current span's context as a `traceparent` value ("" outside any span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent", "")


def parent_of(traceparent: str) -> Context | None:
    return propagate.extract({"traceparent": traceparent}) if traceparent else None


def spans_of(
    name: str, parents: Sequence[Context | None], start_ns: int, end_ns: int, **attributes: Any
) -> None:
    """One span `name` under each of `parents` (None: no span), over the same interval: the
    part each write took in a batch it shared."""
    for parent in parents:
        if parent is None:
            continue
        span = tracer.start_span(
            name, context=parent, kind=SpanKind.CONSUMER, start_time=start_ns, attributes=attributes
        )
        span.end(end_time=end_ns)
