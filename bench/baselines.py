"""Floors for the benchmark, served exactly like the product (uvicorn, one worker).

- `bare_starlette`: one POST route answering a small JSON document, and the REST read floor:
  a GET route answering the product's message page (20 or 50 messages, each with its number,
  body and two times, encoded with orjson as the product does, with a `Link` header) from
  memory.
- `bare_strawberry`: a one-field mutation with the product's parser and validation caches,
  and the read floor: the product's page queries (`application { chat { messagesCount
  messages(first:|last:) { nodes { number body } pageInfo } } }`) answered from memory by
  the same shape of types, 20 or 50 messages, with the same caches.
"""

from __future__ import annotations

import itertools
from functools import partial

import orjson
import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

_numbers = itertools.count(1)


async def _json(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"number": next(_numbers)})


_AT = "2026-11-30T11:00:00.000000Z"
_PAGE = [
    {"number": n + 1, "body": f"seed message {n}", "created_at": _AT, "updated_at": _AT}
    for n in range(200)
]


async def _messages(request: Request) -> Response:
    """A page of messages as the product's REST answers it, from memory: `?limit=` from the
    first, `?last=` the newest, with the link to the next or previous page."""
    last = request.query_params.get("last")
    size = int(last or request.query_params.get("limit") or 20)
    start = len(_PAGE) - size if last else 0
    response = Response(orjson.dumps(_PAGE[start : start + size]), media_type="application/json")
    rel, cursor = ("prev", "before") if last else ("next", "cursor")
    paging = f"{'last' if last else 'limit'}={size}&{cursor}=bWVzc2FnZXM6MjA"
    response.headers["Link"] = f'<{str(request.url).partition("?")[0]}?{paging}>; rel="{rel}"'
    return response


bare_starlette = Starlette(
    routes=[Route("/json", _json, methods=["POST"]), Route("/messages", _messages)]
)


@strawberry.type
class Message:
    number: int
    body: str


@strawberry.input
class CreateMessageInput:
    application_token: str
    chat_number: int
    body: str


@strawberry.type
class CreateMessagePayload:
    message: Message


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class MessageConnection:
    nodes: list[Message]
    page_info: PageInfo


_BODIES = [f"seed message {n}" for n in range(200)]


@strawberry.type
class Chat:
    number: int
    messages_count: int

    @strawberry.field
    async def messages(
        self, first: int | None = None, last: int | None = None
    ) -> MessageConnection:
        size = first or last or 20
        start = len(_BODIES) - size if last else 0
        nodes = [Message(number=n + 1, body=_BODIES[n]) for n in range(start, start + size)]
        return MessageConnection(
            nodes=nodes,
            page_info=PageInfo(
                has_next_page=not last,
                has_previous_page=bool(last),
                start_cursor="bWVzc2FnZTox",
                end_cursor="bWVzc2FnZToyMA",
            ),
        )


@strawberry.type
class Application:
    @strawberry.field
    async def chat(self, number: int) -> Chat | None:
        return Chat(number=number, messages_count=len(_BODIES))


@strawberry.type
class Query:
    ok: bool = True

    @strawberry.field
    async def application(self, token: str) -> Application | None:
        return Application()


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_message(self, input: CreateMessageInput) -> CreateMessagePayload:
        return CreateMessagePayload(message=Message(number=next(_numbers), body=input.body))


bare_strawberry = Starlette(
    routes=[
        Route(
            "/graphql",
            GraphQL(
                strawberry.Schema(
                    query=Query,
                    mutation=Mutation,
                    extensions=[
                        partial(ParserCache, maxsize=512),
                        partial(ValidationCache, maxsize=512),
                    ],
                )
            ),
            methods=["POST"],
        )
    ]
)
