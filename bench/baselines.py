"""Floors for the benchmark, served exactly like the product (uvicorn, one worker).

- `bare_starlette`: one POST route answering a small JSON document.
- `bare_strawberry`: a one-field mutation with the product's parser and validation caches.
"""

from __future__ import annotations

import itertools
from functools import partial

import strawberry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache

_numbers = itertools.count(1)


async def _json(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"number": next(_numbers)})


bare_starlette = Starlette(routes=[Route("/json", _json, methods=["POST"])])


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
class Query:
    ok: bool = True


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
