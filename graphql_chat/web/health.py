"""Liveness, readiness, and the metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from graphql_chat import metrics
from graphql_chat.web.responses import JSONResponse


async def live(_: Request) -> Response:
    """The process answers (for restarts); says nothing about its dependencies."""
    return JSONResponse({"status": "ok"})


async def health(request: Request) -> Response:
    """Readiness: 200 when every dependency answers and numbering is open; 503 naming what
    is not (a dependency down, or numbering recovering after a Redis data loss)."""
    report = await request.app.state.container.health()
    if all(state == "ok" for state in report.values()):
        return JSONResponse({"status": "ok", **report})
    return JSONResponse(
        {"status": "unavailable", **report}, status_code=503, headers={"Retry-After": "1"}
    )


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus text format. It tells operation names and rates: like the list of
    applications, it needs `Authorization: Bearer ADMIN_TOKEN` unless the server listens on
    loopback only. It reads the dependency gauges as the process last checked them
    (`graphql_chat.health.watch`): a scrape never waits for a dependency."""
    container = request.app.state.container
    container.service.admin.authorize(request.headers.get("authorization"), "reading metrics")
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
