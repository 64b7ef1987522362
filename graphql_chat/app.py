"""The Starlette application: /graphql (API and playground), /api/v1 (REST), /health; the
process-wide error handlers and middleware."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from graphql_chat import logs, metrics, migrations, tracing
from graphql_chat.bootstrap import bootstrap
from graphql_chat.config import Settings
from graphql_chat.errors import ChatError, ConfigurationError
from graphql_chat.graphql.view import STATIC, GraphQLView
from graphql_chat.health import watch as watch_health
from graphql_chat.logs import note
from graphql_chat.rest.reading import routes as reading_routes
from graphql_chat.rest.routes import routes as rest_routes
from graphql_chat.web.health import health, live, metrics_endpoint
from graphql_chat.web.middleware import BodyLimit, Observed, TrailingSlash
from graphql_chat.web.responses import JSONResponse, error_response

log = logging.getLogger(__name__)


async def _chat_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, ChatError)
    note("outcome", error.code)
    return error_response(error)


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "BAD_REQUEST")
    note("outcome", code)
    return JSONResponse(
        {"error": {"code": code, "message": error.detail}},
        status_code=error.status_code,
        headers=error.headers,
    )


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    note("outcome", "INTERNAL_SERVER_ERROR")
    return JSONResponse(
        {"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error"}},
        status_code=500,
    )


def create_app(settings: Settings | None = None, *, migrate: bool | None = None) -> Starlette:
    """The ASGI app. Its lifespan starts the container; embedded databases are migrated first."""
    container = bootstrap(settings)
    settings = container.settings
    should_migrate = settings.is_sqlite if migrate is None else migrate

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if should_migrate:
            await migrations.upgrade_async(settings.database_url)
        try:
            await container.start()
            await container.listen()
        except ConfigurationError as error:
            log.error("refusing to start: %s", error.message)
            raise
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it otherwise stall every request in flight.
        gc.freeze()
        watcher = asyncio.create_task(watch_health(container.ready), name="health")
        try:
            yield
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await container.close()
            metrics.process_ended(os.getpid())

    graphql = GraphQLView(container)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/health", health, methods=["GET"]),
            Route("/health/ready", health, methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            *rest_routes,
            *reading_routes,
        ],
        exception_handlers={
            ChatError: _chat_error,
            StarletteHTTPException: _http_error,
            Exception: _unexpected_error,
        },
        lifespan=lifespan,
    )
    app.state.container = container
    app.router.redirect_slashes = False
    app.add_middleware(BodyLimit, limit=settings.max_request_bytes)
    if settings.origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.origins,
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["content-type", "authorization", "idempotency-key", "x-request-id"],
            expose_headers=["link", "retry-after", "x-request-id"],
            max_age=600,
        )
    app.add_middleware(Observed)
    app.add_middleware(TrailingSlash)
    return app


def create_logging_app() -> Starlette:
    """The app of one of `serve --workers N`'s processes, which starts with nothing
    configured: its logs and traces first, as `serve` does them."""
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    tracing.configure("graphql-chat-api")
    return create_app(settings)
