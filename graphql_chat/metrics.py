"""Prometheus metrics (`prometheus-client`): what every process counts, and how it is read.

An API process answers `GET /metrics`; a worker serves its own on `WORKER_METRICS_PORT`.
Under `serve --workers N` the API processes count into files in `PROMETHEUS_MULTIPROC_DIR`
(`serve` makes one when it is not set), and any of them answers for all.

Labels are bounded whatever clients send: an interface is one of a few; a GraphQL operation
is its name only if it is a GraphQL name of at most 64 characters among the first
`_OPERATIONS` names a process has seen (then `other`), `anonymous` without one; a REST
operation is its method and route template (`GET /api/v1/applications/{token}/chats`, never
the token); an outcome is `ok` or an error code of the product's own.
"""

from __future__ import annotations

import os
import re

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

REQUESTS = Counter(
    "graphql_chat_requests",
    "HTTP requests answered, by interface (graphql, rest, health, metrics, other), "
    "operation and outcome (ok, or the error code)",
    ["interface", "operation", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "graphql_chat_request_duration_seconds",
    "Time from a request's arrival to its answer's end",
    ["interface", "operation"],
    buckets=_LATENCY,
)
DOCUMENTS = Counter(
    "graphql_chat_graphql_documents",
    "GraphQL documents looked up in the parsed and validated document cache, by result (hit, miss)",
    ["result"],
)
PAGE_CACHE = Counter(
    "graphql_chat_page_cache_lookups",
    "Pages of messages looked up in the embedded mode's page cache, by result (hit, miss)",
    ["result"],
)
COALESCED = Histogram(
    "graphql_chat_coalesced_batch_size",
    "Calls carried by one round trip, by kind (redis_draw, redis_epoch, publish)",
    ["kind"],
    buckets=_SIZES,
)
PIPELINE_DEPTH = Gauge(
    "graphql_chat_pipeline_depth",
    "Writes accepted and not yet committed, in the embedded mode's in-process pipeline",
    multiprocess_mode="livesum",
)
PAGE_CACHE_BYTES = Gauge(
    "graphql_chat_page_cache_bytes",
    "About how many bytes the pages kept by the embedded mode's page cache hold",
    multiprocess_mode="livesum",
)
QUEUE_DEPTH = Gauge(
    "graphql_chat_queue_depth",
    "Messages ready in the RabbitMQ write queue, as this worker last saw",
    multiprocess_mode="max",
)
BATCH_EVENTS = Histogram(
    "graphql_chat_batch_events",
    "Events per committed batch (a worker's, or the embedded pipeline's)",
    buckets=_SIZES,
)
COMMIT_SECONDS = Histogram(
    "graphql_chat_commit_duration_seconds",
    "Time to commit one batch to the store",
    buckets=_LATENCY,
)
INDEX_SECONDS = Histogram(
    "graphql_chat_index_duration_seconds",
    "Time to index one round of committed messages in search",
    buckets=_LATENCY,
)
LAG_SECONDS = Histogram(
    "graphql_chat_persistence_lag_seconds",
    "From a write's acceptance (its create or update answered) to stage: stored (readable) "
    "or searchable",
    ["stage"],
    buckets=_LAG,
)
RECOVERING = Gauge(
    "graphql_chat_numbering_recovering",
    "1 while numbering recovers after a Redis data loss (creates answer 503), else 0",
    multiprocess_mode="max",
)
DEPENDENCY_UP = Gauge(
    "graphql_chat_dependency_up",
    "1 when the dependency answered this process's last check (every 5 s), else 0",
    ["dependency"],
    multiprocess_mode="min",
)

_OPERATIONS = 200
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_seen: set[str] = set()


def operation_label(name: str | None) -> str:
    """A GraphQL operation's label (see the module's text)."""
    if not name:
        return "anonymous"
    if name in _seen:
        return name
    if len(_seen) >= _OPERATIONS or not _NAME.fullmatch(name):
        return "other"
    _seen.add(name)
    return name


_answered: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def request_answered(interface: str, operation: str, outcome: str, seconds: float) -> None:
    """Count a request and its time (each series' child looked up once: labels are bounded)."""
    series = _answered.get((interface, operation, outcome))
    if series is None:
        series = _answered[(interface, operation, outcome)] = (
            REQUESTS.labels(interface, operation, outcome),
            REQUEST_SECONDS.labels(interface, operation),
        )
    series[0].inc()
    series[1].observe(seconds)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition() -> tuple[bytes, str]:
    """Every series of this process, or of every API process under `serve --workers N`, in
    the text format, with its content type."""
    if multiprocess():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def process_ended(pid: int) -> None:
    """Drop a finished process's live gauges from the shared files."""
    if multiprocess():
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
