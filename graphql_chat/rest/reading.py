"""Read markers, unread counts and a user's chats by latest activity, under /api/v1 (the
REST side of `usecases/reading.py`). A user calls them with the application's public id in
the path and their user token in `Authorization`; the backend reads a chat's markers with
the application's token."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from graphql_chat.domain import instant, iso
from graphql_chat.errors import Forbidden
from graphql_chat.paging import Page
from graphql_chat.ports import Membership
from graphql_chat.rest.routes import (
    _caller,
    _chat,
    _chat_number,
    _json_object,
    _list,
    _message,
    _page_request,
    _service,
)
from graphql_chat.web.responses import JSONResponse


async def _user(request: Request) -> Any:
    _, user = await _caller(request)
    if user is None:
        raise Forbidden("this needs a user token: it is about the user's own reading")
    return user


async def _mark(request: Request, back: bool) -> Response:
    """`{"number": N}`: read up to message N (`read`), or N and after it unread (`unread`)."""
    data = await _json_object(request)
    user = await _user(request)
    marker = await _service(request).reading.mark(
        user, request.path_params["chat"], data.get("number"), back
    )
    return JSONResponse(
        {"chat_number": int(request.path_params["chat"]), "last_read_number": marker}
    )


async def mark_read(request: Request) -> Response:
    return await _mark(request, back=False)


async def mark_unread(request: Request) -> Response:
    return await _mark(request, back=True)


def _marker(member: Membership) -> dict[str, Any]:
    return {
        "user_id": member.user_id,
        "last_read_number": member.last_read_number,
        "read_at": None if member.read_at is None else iso_micros(member.read_at),
    }


def iso_micros(at: int) -> str:
    return iso(instant(at))


async def list_read_markers(request: Request) -> Response:
    """Each member's read marker, in the order they joined (for "seen by")."""
    service = _service(request)
    token, user = await _caller(request)
    number = await _chat_number(request, user)
    page_request = _page_request(request, "member")
    chat = await service.directory.require_chat(token, number)
    page = await service.members.page(chat.application_id, chat.number, page_request)
    return _list(request, page, _marker)


async def inbox(request: Request) -> Response:
    """The user's chats, latest activity first, each with its last message and unread count."""
    service = _service(request)
    user = await _user(request)
    page = await service.reading.inbox(user, _page_request(request, "inbox"))
    unread = await service.reading.unread(
        user, {chat.id: member.last_read_number for chat, member in page.items if chat}
    )
    last = await service.reading.last_messages(page.items)
    rows = []
    for chat, member in page.items:
        newest = last.get(member.chat_number)
        shown = _chat(chat) if chat is not None else _pending(member)
        rows.append(
            {
                **shown,
                "active_at": iso_micros(member.active_at),
                "last_read_number": member.last_read_number,
                "unread_count": unread[chat.id] if chat is not None else 0,
                "last_message": _message(newest) if newest else None,
            }
        )
    shaped: Page[dict[str, Any]] = Page(
        rows, page.keys, page.has_next, page.has_previous, page.kind
    )
    return _list(request, shaped, _same)


def _pending(member: Membership) -> dict[str, Any]:
    """A chat whose create is still on its way to the store, as `_chat` shows a stored one."""
    return {
        "number": member.chat_number,
        "messages_count": 0,
        "created_at": iso_micros(member.joined_at),
    }


def _same(row: dict[str, Any]) -> dict[str, Any]:
    return row


async def unread_totals(request: Request) -> Response:
    chats, messages = await _service(request).reading.totals(await _user(request))
    return JSONResponse({"unread_chats_count": chats, "unread_count": messages})


_APP = "/api/v1/applications/{token}"
_CHAT = _APP + "/chats/{chat}"
routes: list[BaseRoute] = [
    Route(_CHAT + "/read", mark_read, methods=["POST"]),
    Route(_CHAT + "/unread", mark_unread, methods=["POST"]),
    Route(_CHAT + "/read_markers", list_read_markers, methods=["GET"]),
    Route(_APP + "/inbox", inbox, methods=["GET"]),
    Route(_APP + "/unread", unread_totals, methods=["GET"]),
]
