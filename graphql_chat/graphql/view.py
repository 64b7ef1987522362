"""The GraphQL endpoint: Strawberry's ASGI view with our context, the offline playground, and
the GraphQL-over-HTTP media types."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from cross_web import (  # Strawberry's request adapter, and what it raises for non-GraphQL
    AsyncHTTPRequestAdapter,
    HTTPException,
)
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.types import ExecutionResult

from graphql_chat.bootstrap import Container
from graphql_chat.graphql.context import Context
from graphql_chat.graphql.persisted import PersistedQueries, Refused, load_manifest
from graphql_chat.graphql.protocols import PREFERENCE, LegacyProtocol, TransportProtocol, preferred
from graphql_chat.graphql.schema import build_schema, coded
from graphql_chat.logs import note
from graphql_chat.web.responses import JSONResponse

STATIC = Path(__file__).parent.parent / "static"
_PERSISTED_BYTES = 16 * 1024 * 1024  # persisted query documents kept per process

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


class _TextFrames(ASGIWebSocketAdapter):
    """The graphql-ws protocols speak in text frames: a browser hands a binary one to the
    client as a Blob, which it cannot parse."""

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        """Only JSON objects are protocol messages: anything else closes the connection with
        4400, as malformed JSON does (the handler would fail on it otherwise)."""
        async with aclosing(super().iter_json(ignore_parsing_errors=ignore_parsing_errors)) as it:
            async for message in it:
                if not isinstance(message, dict):
                    await self.ws.close(4400, "a message must be a JSON object")
                    return
                yield message

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as error:
            raise WebSocketDisconnected from error


class GraphQLView(GraphQL[Context, None]):
    """Strawberry's ASGI view with our context, the offline playground, and the
    GraphQL-over-HTTP media types: `application/graphql-response+json` when the client asks
    for it (a request error, one with no `data`, then answers 400), `application/json`
    otherwise (200 for every well-formed request)."""

    websocket_adapter_class = _TextFrames
    graphql_transport_ws_handler_class = TransportProtocol
    graphql_ws_handler_class = LegacyProtocol

    def __init__(self, container: Container) -> None:
        settings = container.settings
        listed = (
            load_manifest(settings.persisted_queries_manifest)
            if settings.persisted_queries_manifest
            else None
        )
        super().__init__(
            build_schema(settings, listed),
            graphql_ide="graphiql",
            subscription_protocols=PREFERENCE,
            connection_init_wait_timeout=timedelta(milliseconds=settings.live_init_timeout_ms),
            max_subscriptions_per_connection=settings.live_max_subscriptions,
            keep_alive=True,  # the legacy protocol's "ka"; graphql-transport-ws pings itself
            keep_alive_interval=15,
            allowed_origins=settings.origins,
        )
        self.container = container
        self.connections = 0  # open WebSockets
        self.persisted = PersistedQueries(max_bytes=_PERSISTED_BYTES, listed=listed)

    async def pick_websocket_subprotocol(self, request: WebSocket) -> str | None:
        return preferred(request.scope.get("subprotocols") or [])

    def parse_json(self, data: str | bytes) -> object:
        # orjson only: it refuses what the standard parser lets through (lone surrogates,
        # NaN, Infinity), which is not JSON and must not reach the service.
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise HTTPException(400, f"the request body is not valid JSON: {error.msg}") from None

    def should_render_graphql_ide(self, request: Any) -> bool:
        """A GET with neither a query nor a persisted query's hash opens the playground."""
        return super().should_render_graphql_ide(request) and (
            request.query_params.get("extensions") is None
        )

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData) and data.extensions:
            data.query = self.persisted.resolve(data.query, data.extensions)
        return data

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def get_context(self, request: Any, response: Any) -> Context:
        websocket = request if isinstance(request, WebSocket) else None
        client = request.client
        context = Context(
            self.container.service,
            request.headers.get("authorization"),
            websocket,
            client.host if client else "unknown",
        )
        if websocket is None:
            request.state.context = context
        return context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.run(request)
        except HTTPException as error:
            # Not a GraphQL request at all (bad JSON, no query, wrong method), or a persisted
            # query refused: answer in the GraphQL response shape, not Strawberry's plain text.
            code = error.code if isinstance(error, Refused) else "BAD_REQUEST"
            note("outcome", code)
            response = JSONResponse(
                {"errors": [{"message": error.reason, "extensions": {"code": code}}]},
                status_code=error.status_code,
            )
        if request.method == "GET" and response.media_type != "text/html":
            response.headers["cache-control"] = self._cache_control(request, response)
            response.headers["vary"] = "Accept, Authorization"
        context = getattr(request.state, "context", None)
        if context is not None and context.refused is not None:
            # Over a rate limit: the status and fields any HTTP client understands.
            response.status_code = 429
            response.headers.update(context.refused.headers)
        if response.media_type != "text/html" and wants_graphql_response(
            request.headers.get("accept", "")
        ):
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
            if response.status_code == 200 and getattr(request.state, "request_error", False):
                response.status_code = 400
        await response(scope, receive, send)

    def _cache_control(self, request: Request, response: Response) -> str:
        """A read over GET (a persisted query's hash in the URL) may be kept by a cache for
        GRAPHQL_GET_MAX_AGE seconds when it answered without an error: by shared caches
        unless it carried credentials. Anything else, and every answer by default, is not
        kept: reads show stored state, and a kept one would hide later writes."""
        max_age = self.container.settings.graphql_get_max_age
        if not max_age or response.status_code != 200 or getattr(request.state, "errors", True):
            return "no-store"
        scope = "private" if request.headers.get("authorization") else "public"
        return f"{scope}, max-age={max_age}"

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """At most LIVE_MAX_CONNECTIONS at once: one more is accepted and closed at once with
        1013 (try again later), which graphql-ws clients retry with backoff."""
        if self.connections >= self.container.settings.live_max_connections:
            websocket = WebSocket(scope, receive, send)
            protocols = scope.get("subprotocols") or []
            await websocket.accept(protocols[0] if protocols else None)
            await websocket.close(1013, "too many connections: try again later")
            return
        self.connections += 1
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.connections -= 1

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        request_error = False
        request.state.errors = bool(result.errors)
        if result.errors:
            result.errors = [coded(error) for error in result.errors]
            # Nothing ran: the document did not parse or validate, or the variables did not
            # fit. Such a response has no `data` entry.
            request_error = result.data is None and all(e.path is None for e in result.errors)
            request.state.request_error = request_error
            note("outcome", str((result.errors[0].extensions or {}).get("code", "ERROR")))
        answer = await super().process_result(request, result)
        if request_error:
            answer.pop("data", None)
        return answer

    async def render_graphql_ide(self, request: Any) -> Response:
        return FileResponse(STATIC / "graphiql.html", media_type="text/html")
