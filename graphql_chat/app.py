"""The Starlette application: /graphql (API and playground), /api/v1 (REST), /health."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from graphql_chat import migrations
from graphql_chat.bootstrap import Container, bootstrap
from graphql_chat.config import Settings
from graphql_chat.errors import ChatError, ConfigurationError, TooLarge, Unavailable
from graphql_chat.graphql.context import Context
from graphql_chat.graphql.schema import build_schema, coded
from graphql_chat.rest.routes import JSONResponse
from graphql_chat.rest.routes import routes as rest_routes

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"


GRAPHQL_RESPONSE = "application/graphql-response+json"


def wants_graphql_response(accept: str) -> bool:
    """Whether `Accept` prefers `application/graphql-response+json` to `application/json`
    (the GraphQL-over-HTTP media types; a tie goes to the newer one, no mention to JSON)."""
    best = {GRAPHQL_RESPONSE: -1.0, "application/json": -1.0}
    for part in accept.split(","):
        media, _, parameters = part.partition(";")
        media = media.strip().lower()
        if media in best:
            quality = 1.0
            for parameter in parameters.split(";"):
                name, _, value = parameter.partition("=")
                if name.strip() == "q":
                    try:
                        quality = float(value)
                    except ValueError:
                        quality = 0.0
            best[media] = max(best[media], quality)
    return best[GRAPHQL_RESPONSE] > 0 and best[GRAPHQL_RESPONSE] >= best["application/json"]


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context, the offline playground, and the
    GraphQL-over-HTTP media types: `application/graphql-response+json` when the client asks
    for it (a request error, one with no `data`, then answers 400), `application/json`
    otherwise (200 for every well-formed request)."""

    def __init__(self, container: Container) -> None:
        super().__init__(build_schema(container.settings), graphql_ide="graphiql")
        self.container = container

    def parse_json(self, data: str | bytes) -> object:
        # orjson only: it refuses what the standard parser lets through (lone surrogates,
        # NaN, Infinity), which is not JSON and must not reach the service.
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"the request body is not valid JSON: {error.msg}") from None

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def get_context(self, request: Any, response: Any) -> Context:
        return Context(self.container.service, request.headers.get("authorization"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.run(request)
        except HTTPException as error:
            # Not a GraphQL request at all (bad JSON, no query, wrong method): answer in the
            # GraphQL response shape rather than Strawberry's plain text.
            response = JSONResponse(
                {"errors": [{"message": error.reason, "extensions": {"code": "BAD_REQUEST"}}]},
                status_code=error.status_code,
            )
        if response.media_type != "text/html" and wants_graphql_response(
            request.headers.get("accept", "")
        ):
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
            if response.status_code == 200 and getattr(request.state, "request_error", False):
                response.status_code = 400
        await response(scope, receive, send)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        request_error = False
        if result.errors:
            result.errors = [coded(error) for error in result.errors]
            # Nothing ran: the document did not parse or validate, or the variables did not
            # fit. Such a response has no `data` entry.
            request_error = result.data is None and all(e.path is None for e in result.errors)
            request.state.request_error = request_error
        answer = await super().process_result(request, result)
        if request_error:
            answer.pop("data", None)
        return answer

    async def render_graphql_ide(self, request: Any) -> Response:
        return FileResponse(STATIC / "graphiql.html", media_type="text/html")


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
        response = _too_large(self.limit, scope["path"].startswith("/graphql"))
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


def _too_large(limit: int, graphql: bool = False) -> Response:
    error = TooLarge(f"the request body is larger than {limit} bytes (MAX_REQUEST_BYTES)")
    if graphql:
        return JSONResponse(
            {"errors": [{"message": error.message, "extensions": {"code": error.code}}]},
            status_code=error.status,
        )
    return error_response(error)


def error_response(error: ChatError) -> JSONResponse:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    field = getattr(error, "field", None)
    if field:
        body["field"] = field
    response = JSONResponse({"error": body}, status_code=error.status)
    if isinstance(error, Unavailable):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


async def _chat_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, ChatError)
    return error_response(error)


async def _http_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(error.status_code, "BAD_REQUEST")
    return JSONResponse(
        {"error": {"code": code, "message": error.detail}},
        status_code=error.status_code,
        headers=error.headers,
    )


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=error)
    return JSONResponse(
        {"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error"}},
        status_code=500,
    )


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
        except ConfigurationError as error:
            log.error("refusing to start: %s", error.message)
            raise
        # Everything built so far lives as long as the process: keep it out of the cyclic
        # collector, whose full passes over it otherwise stall every request ~50 ms.
        gc.freeze()
        try:
            yield
        finally:
            await container.close()

    graphql = GraphQLView(container)
    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/health/ready", health, methods=["GET"]),
            Route("/health/live", live, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            *rest_routes,
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
    app.add_middleware(TrailingSlash)
    return app
