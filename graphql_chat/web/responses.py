"""JSON responses (orjson) and the error body every interface but GraphQL answers with."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from graphql_chat.errors import ChatError, RateLimited, TooLarge, Unavailable


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def too_large(limit: int, graphql: bool = False) -> Response:
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
    elif isinstance(error, RateLimited):
        response.headers.update(error.headers)
    return response
