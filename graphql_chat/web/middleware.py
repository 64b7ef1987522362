"""ASGI middleware: the request body limit and trailing slashes."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graphql_chat.errors import TooLarge
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
