"""The seed's REST calls under /api/v1: same paths, methods and JSON keys.

Lists answer plain JSON arrays, as in the seed; the next page is in a `Link` header
(`<...?limit=N&cursor=C>; rel="next"`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from graphql_chat.domain import (
    Application,
    Chat,
    CursorKind,
    Message,
    User,
    instant,
    iso,
    now_micros,
    parse_iso,
)
from graphql_chat.errors import (
    Forbidden,
    InvalidInput,
    MalformedRequest,
    NotFound,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
)
from graphql_chat.paging import Page, PageRequest
from graphql_chat.ports import Membership, SigningKeys
from graphql_chat.usecases import ChatService
from graphql_chat.web.paging import Paging, page_request
from graphql_chat.web.renderings import Renderings
from graphql_chat.web.responses import JSONResponse


def _service(request: Request) -> ChatService:
    service: ChatService = request.app.state.container.service
    return service


def _json_content(request: Request) -> None:
    """Writes take JSON only: a browser sends a cross-site form or `text/plain` body without
    asking first, never an `application/json` one."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(
            "send the request body as JSON, with the header Content-Type: application/json"
        )


PAGING = Paging(size="limit", cursor="cursor", last="last", before="before")


async def _json_object(request: Request, required: bool = True) -> dict[str, Any]:
    _json_content(request)
    raw = await request.body()
    if not raw.strip():
        if required:
            raise MalformedRequest("the request body must be a JSON object")
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise MalformedRequest(f"the request body is not valid JSON: {error.msg}") from None
    if not isinstance(data, dict):
        raise MalformedRequest("the request body must be a JSON object")
    return data


def _count(request: Request, name: str) -> object:
    value: object = request.query_params.get(name)
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise InvalidInput(f"{name} must be a positive integer", name)
        value = int(value)
    return value


def _page_request(request: Request, kind: CursorKind) -> PageRequest:
    """`?limit=&cursor=` forward; `?last=&before=` backward (the last page of the list with
    `last` alone: the newest of a list in ascending order, the oldest matches of a search)."""
    params = request.query_params
    return page_request(
        _service(request).settings,
        kind,
        PAGING,
        _count(request, "limit"),
        params.get("cursor"),
        _count(request, "last"),
        params.get("before"),
    )


_FORWARD, _BACKWARD = ("limit", "cursor"), ("last", "before")
_BODIES: Renderings[bytes] = Renderings()  # a page's JSON body, by the shape of its items


def request_backward(request: Request) -> bool:
    return any(name in request.query_params for name in _BACKWARD)


def _list(request: Request, page: Page[Any], shape: Any) -> Response:
    """The page, with `Link` headers to the next page and (for a page asked for backward)
    the previous one. Its body is made once for a page the page cache keeps."""
    body = _BODIES.get(page, shape)
    if body is None:
        body = _BODIES.keep(page, shape, orjson.dumps([shape(item) for item in page.items]))
    response = Response(body, media_type="application/json")
    links = []
    size = max(len(page.items), 1)
    if page.has_next and page.end_cursor:
        url = _beside(request, _BACKWARD, limit=size, cursor=page.end_cursor)
        links.append(f'<{url}>; rel="next"')
    # Forward pages link forward only, as they always have: a client that follows the one link
    # it is given keeps working. Pages asked for backward link both ways.
    if request_backward(request) and page.has_previous and page.start_cursor:
        url = _beside(request, _FORWARD, last=size, before=page.start_cursor)
        links.append(f'<{url}>; rel="prev"')
    if links:
        response.headers["Link"] = ", ".join(links)
    return response


def _beside(request: Request, dropped: tuple[str, ...], **paging: object) -> str:
    """This request's URL with the paging parameters `dropped` and `paging` set, the others
    kept (one pass over the query, where Starlette's `remove_`/`include_query_params` take
    one each, and the URL's text cut at its query rather than parsed again)."""
    kept = [
        (name, value)
        for name, value in request.query_params.multi_items()
        if name not in dropped and name not in paging
    ]
    kept.extend((name, str(value)) for name, value in paging.items())
    return f"{str(request.url).partition('?')[0]}?{urlencode(kept)}"


def _application(app: Application) -> dict[str, Any]:
    return {
        "name": app.name,
        "token": app.token,
        "chats_count": app.chats_count,
        "public_id": app.public_id,
        "users_manage_chats": app.users_manage_chats,
    }


def _chat(chat: Chat) -> dict[str, Any]:
    return {
        "number": chat.number,
        "messages_count": chat.messages_count,
        "created_at": iso(chat.created_at),
    }


def _message(message: Message) -> dict[str, Any]:
    created = iso(message.created_at)
    return {
        "number": message.number,
        "body": message.body,
        "created_at": created,
        # Never edited (one time, as the store reads it): its text is made once.
        "updated_at": created
        if message.updated_at is message.created_at
        else iso(message.updated_at),
        "author": message.author,
    }


def _member(member: Membership) -> dict[str, Any]:
    return {"user_id": member.user_id, "joined_at": iso(instant(member.joined_at))}


PUBLIC_ID_PREFIX = "app_"


def client_address(request: Request) -> str:
    """The client's address: the peer's, or the one a trusted proxy (TRUSTED_PROXIES) names."""
    return request.client.host if request.client else "unknown"


async def _caller(request: Request) -> tuple[str, User | None]:
    """Who calls: the application's backend (its token in the path), or a user (the
    application's public id in the path, and the user's token in `Authorization`)."""
    named = request.path_params["token"]
    service = _service(request)
    if not named.startswith(PUBLIC_ID_PREFIX):
        await service.throttle.application(await service.directory.application_id(named))
        return named, None
    user = await service.users.authenticate(request.headers.get("authorization"))
    if user is None:
        raise Unauthenticated(
            "a path with an application's public id needs Authorization: Bearer <user token>"
        )
    if user.public_id != named:
        raise NotFound("application not found")
    await service.throttle.user(user, writes=request.method != "GET")
    return user.token, user


async def _backend(request: Request) -> str:
    """The application token of a call only the application's backend may make."""
    token, user = await _caller(request)
    if user is not None:
        raise Forbidden("this needs the application's token, not a user token")
    return token


async def _chat_number(request: Request, user: User | None) -> object:
    """The path's chat number, if the caller may reach the chat (a user: a member)."""
    number = request.path_params["chat"]
    if user is not None:
        return await _service(request).members.require(user, number)
    return number


# -- applications ------------------------------------------------------------------------------


async def create_application(request: Request) -> Response:
    data = await _json_object(request)
    await _service(request).throttle.anonymous(client_address(request))
    app = await _service(request).applications.create(data.get("name"))
    return JSONResponse(_application(app), status_code=201)


async def list_applications(request: Request) -> Response:
    _service(request).admin.authorize(request.headers.get("authorization"))
    page_request = _page_request(request, "application")
    page = await _service(request).applications.page(page_request)
    return _list(request, page, _application)


async def get_application(request: Request) -> Response:
    app = await _service(request).directory.require_application(await _backend(request))
    return JSONResponse(_application(app))


async def update_application(request: Request) -> Response:
    data = await _json_object(request)
    await _service(request).applications.update(
        await _backend(request), data.get("name"), data.get("users_manage_chats")
    )
    return JSONResponse({"success": "ok"})


# -- users -------------------------------------------------------------------------------------


async def create_user_token(request: Request) -> Response:
    data = await _json_object(request)
    minted = await _service(request).users.mint(
        await _backend(request), data.get("user_id"), data.get("expires_in")
    )
    return JSONResponse(
        {"token": minted.token, "user_id": minted.user_id, "expires_at": iso(minted.expires_at)},
        status_code=201,
    )


def _keys(keys: SigningKeys) -> dict[str, Any]:
    now = now_micros()
    overlapping = len(keys.verifying(now)) > 1 and keys.previous_until is not None
    return {
        "public_id": keys.public_id,
        "signing_secret": keys.secret,
        "previous_signing_secret": keys.previous if overlapping else None,
        "previous_valid_until": iso(instant(keys.previous_until or 0)) if overlapping else None,
    }


async def get_signing_secret(request: Request) -> Response:
    keys = await _service(request).users.signing_keys(await _backend(request))
    return JSONResponse(_keys(keys))


async def rotate_signing_secret(request: Request) -> Response:
    data = await _json_object(request, required=False)
    keys = await _service(request).users.rotate(
        await _backend(request), data.get("previous_valid_for")
    )
    return JSONResponse(_keys(keys))


async def revoke_user_tokens(request: Request) -> Response:
    data = await _json_object(request)
    before = data.get("issued_before")
    if before is not None:
        try:
            before = parse_iso(before) if isinstance(before, str) else None
        except ValueError:
            before = None
        if before is None:
            raise InvalidInput("issued_before must be an RFC 3339 time", "issued_before")
    held = await _service(request).users.revoke(
        await _backend(request), data.get("user_id"), before
    )
    return JSONResponse({"user_id": data.get("user_id"), "issued_before": iso(held)})


async def list_members(request: Request) -> Response:
    service = _service(request)
    token, user = await _caller(request)
    number = await _chat_number(request, user)
    page_request = _page_request(request, "member")
    chat = await service.directory.require_chat(token, number)
    page = await service.members.page(chat.application_id, chat.number, page_request)
    return _list(request, page, _member)


async def change_members(request: Request) -> Response:
    """{"add": [user ids], "remove": [user ids]}: either or both."""
    data = await _json_object(request)
    token, user = await _caller(request)
    members = _service(request).members
    number = request.path_params["chat"]
    if data.get("add") is None and data.get("remove") is None:
        raise InvalidInput("give add or remove: lists of user ids", "add")
    added = (
        []
        if data.get("add") is None
        else await members.add(token, number, data["add"], user, "add")
    )
    removed = (
        []
        if data.get("remove") is None
        else await members.remove(token, number, data["remove"], user, "remove")
    )
    return JSONResponse({"added": added, "removed": removed})


# -- chats -------------------------------------------------------------------------------------


async def create_chat(request: Request) -> Response:
    """An optional body `{"members": [user ids]}`: members from the start."""
    data = await _json_object(request, required=False)
    token, user = await _caller(request)
    created = await _service(request).chats.create(
        token, request.headers.get("idempotency-key"), user, data.get("members")
    )
    return JSONResponse(
        {"number": created.number, "created_at": iso(created.created_at)}, status_code=201
    )


async def list_chats(request: Request) -> Response:
    """Every chat of the application; for a user, the chats they are a member of, in the
    order they joined them."""
    service = _service(request)
    token, user = await _caller(request)
    if user is not None:
        page = await service.members.chats(user, _page_request(request, "member"))
        return _list(request, page, _chat)
    page_request = _page_request(request, "chat")
    app_id = await service.directory.application_id(token)
    pages = await service.chats.pages([app_id], page_request)
    return _list(request, pages[app_id], _chat)


async def get_chat(request: Request) -> Response:
    token, user = await _caller(request)
    number = await _chat_number(request, user)
    chat = await _service(request).directory.require_chat(token, number)
    return JSONResponse(_chat(chat))


# -- messages ----------------------------------------------------------------------------------


async def create_message(request: Request) -> Response:
    data = await _json_object(request)
    token, user = await _caller(request)
    message = await _service(request).messages.create(
        token,
        request.path_params["chat"],
        data.get("body"),
        request.headers.get("idempotency-key"),
        user,
    )
    return JSONResponse(
        {"number": message.number, "created_at": iso(message.created_at)}, status_code=201
    )


async def update_message(request: Request) -> Response:
    data = await _json_object(request)
    params = request.path_params
    service = _service(request)
    token, user = await _caller(request)
    message = await service.messages.update(
        token, params["chat"], params["number"], data.get("body"), user
    )
    answer = _message(message)
    # The update is accepted: when its create was is the store's to say, and null if it
    # cannot yet (the create still queued, or the store unavailable).
    try:
        answer["created_at"] = iso(
            await service.messages.created_at(token, params["chat"], message.number)
        )
    except (NotFound, Unavailable):
        answer["created_at"] = None
    return JSONResponse(answer)


async def list_messages(request: Request) -> Response:
    service = _service(request)
    token, user = await _caller(request)
    number = await _chat_number(request, user)
    page_request = _page_request(request, "message")
    chat = await service.directory.chat_ref(token, number)
    pages = await service.reads.message_pages([chat], page_request)
    return _list(request, pages[chat.id], _message)


async def get_message(request: Request) -> Response:
    token, user = await _caller(request)
    number = await _chat_number(request, user)
    message = await _service(request).messages.require(token, number, request.path_params["number"])
    return JSONResponse(_message(message))


async def search_messages(request: Request) -> Response:
    """POST with {"body": "..."} as in the seed, or GET with ?q=..."""
    service = _service(request)
    token, user = await _caller(request)
    number = await _chat_number(request, user)
    if request.method == "POST":
        data = await _json_object(request)
        if "body" not in data:
            raise InvalidInput("body is required: the text to search for", "body")
        query = data["body"]
    else:
        query = request.query_params.get("q")
        if query is None:
            raise InvalidInput("q is required: the text to search for", "q")
    page_request = _page_request(request, "search")
    chat_id = await service.directory.chat_id(token, number)
    page = await service.reads.search(chat_id, query, page_request)
    return _list(request, page, _message)


_APP = "/api/v1/applications"
_CHAT = _APP + "/{token}/chats/{chat}"

# Starlette tries routes in order: the hot writes come first.
routes: list[BaseRoute] = [
    Route(_CHAT + "/messages", create_message, methods=["POST"]),
    Route(_CHAT + "/messages/{number}", update_message, methods=["PUT"]),
    Route(_APP + "/{token}/chats", create_chat, methods=["POST"]),
    Route(_CHAT + "/messages", list_messages, methods=["GET"]),
    Route(_CHAT + "/messages/search", search_messages, methods=["GET", "POST"]),
    Route(_CHAT + "/messages/{number}", get_message, methods=["GET"]),
    Route(_CHAT, get_chat, methods=["GET"]),
    Route(_APP + "/{token}/chats", list_chats, methods=["GET"]),
    Route(_APP, create_application, methods=["POST"]),
    Route(_APP, list_applications, methods=["GET"]),
    Route(_APP + "/{token}", get_application, methods=["GET"]),
    Route(_APP + "/{token}", update_application, methods=["PUT"]),
    Route(_APP + "/{token}/user_tokens", create_user_token, methods=["POST"]),
    Route(_APP + "/{token}/signing_secret", get_signing_secret, methods=["GET"]),
    Route(_APP + "/{token}/signing_secret", rotate_signing_secret, methods=["POST"]),
    Route(_APP + "/{token}/revocations", revoke_user_tokens, methods=["POST"]),
    Route(_CHAT + "/members", list_members, methods=["GET"]),
    Route(_CHAT + "/members", change_members, methods=["POST"]),
]
