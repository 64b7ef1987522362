"""The seed's REST calls, with the seed's paths, methods and JSON shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

JSON = {"content-type": "application/json", "cache-control": "no-cache"}
TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def _without(answer: Any, *added: str) -> Any:
    """The answer without keys added beside the seed's (their values checked elsewhere)."""
    if isinstance(answer, list):
        return [_without(item, *added) for item in answer]
    return {key: value for key, value in answer.items() if key not in added}


def _seed(answer: Any, *times: str) -> Any:
    """The answer as the seed shows it: its time keys (ours, recent, in the one format) taken
    off each object."""
    if isinstance(answer, list):
        return [_seed(item, *times) for item in answer]
    for key in times:
        value = answer.pop(key)
        assert TIME.fullmatch(value), value
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    return answer


async def _app(http: httpx.AsyncClient, name: str = "app1") -> str:
    response = await http.post("/api/v1/applications", json={"name": name}, headers=JSON)
    assert response.status_code == 201
    token: str = response.json()["token"]
    return token


ADDED_TO_APPLICATIONS = ("public_id", "users_manage_chats")  # keys added beside the seed's


async def test_the_seed_walkthrough(http: httpx.AsyncClient) -> None:
    created = await http.post("/api/v1/applications", json={"name": "app1"}, headers=JSON)
    body = created.json()
    # The seed's keys, and those added beside them since.
    assert set(body) == {"name", "token", "chats_count", "public_id", "users_manage_chats"}
    assert body["name"] == "app1" and body["chats_count"] == 0
    token = body["token"]
    assert len(token) == 36

    renamed = await http.put(
        f"/api/v1/applications/{token}", json={"name": "new name for app1"}, headers=JSON
    )
    assert renamed.json() == {"success": "ok"}

    listed = await http.get("/api/v1/applications/", headers=JSON)
    assert listed.status_code == 200
    assert {"name": "new name for app1", "token": token, "chats_count": 0} in _without(
        listed.json(), *ADDED_TO_APPLICATIONS
    )

    chat = await http.post(f"/api/v1/applications/{token}/chats", headers=JSON)
    assert _seed(chat.json(), "created_at") == {"number": 1}
    chats = (await http.get(f"/api/v1/applications/{token}/chats", headers=JSON)).json()
    assert _seed(chats, "created_at") == [{"number": 1, "messages_count": 0}]
    assert _seed(
        (await http.get(f"/api/v1/applications/{token}/chats/1")).json(), "created_at"
    ) == {
        "number": 1,
        "messages_count": 0,
    }

    base = f"/api/v1/applications/{token}/chats/1/messages"
    message = await http.post(base, json={"body": "message 1 for chat 1 in app 1"}, headers=JSON)
    assert _seed(message.json(), "created_at") == {"number": 1}
    new_body = "new body :) message 1 for chat 1 in app 1"
    updated = await http.put(f"{base}/1", json={"body": new_body}, headers=JSON)
    both = ("created_at", "updated_at")
    mine = {"number": 1, "body": new_body, "author": None}  # sent with the application token
    assert _seed(updated.json(), *both) == mine
    assert _seed((await http.get(base)).json(), *both) == [mine]
    assert _seed((await http.get(f"{base}/1")).json(), *both) == mine
    found = await http.post(f"{base}/search", json={"body": "message 1"}, headers=JSON)
    assert _seed(found.json(), *both) == [mine]
    assert _seed((await http.get(f"{base}/search", params={"q": "NEW BODY"})).json(), *both) == [
        mine
    ]

    assert _without(
        (await http.get(f"/api/v1/applications/{token}")).json(), *ADDED_TO_APPLICATIONS
    ) == {
        "name": "new name for app1",
        "token": token,
        "chats_count": 1,
    }
    assert (await http.get(f"/api/v1/applications/{token}/chats/1")).json()["messages_count"] == 1


async def test_lists_are_paginated_with_a_link_header(http: httpx.AsyncClient) -> None:
    token = await _app(http)
    await http.post(f"/api/v1/applications/{token}/chats", json={})
    base = f"/api/v1/applications/{token}/chats/1/messages"
    for n in range(1, 8):
        await http.post(base, json={"body": f"text {n}"})
    seen: list[int] = []
    url: str | None = f"{base}?limit=3"
    while url:
        response = await http.get(url)
        page = response.json()
        assert isinstance(page, list) and len(page) <= 3
        seen += [m["number"] for m in page]
        links = response.links
        url = links["next"]["url"] if "next" in links else None
        assert set(links) <= {"next"}  # a forward page links forward only
    assert seen == list(range(1, 8))

    found = await http.get(f"{base}/search", params={"q": "text", "limit": 5})
    assert [m["number"] for m in found.json()] == [7, 6, 5, 4, 3]
    assert "link" in found.headers


async def test_default_and_maximum_page_size(http: httpx.AsyncClient) -> None:
    token = await _app(http)
    for _ in range(25):
        await http.post(f"/api/v1/applications/{token}/chats", json={})
    assert len((await http.get(f"/api/v1/applications/{token}/chats")).json()) == 20
    too_many = await http.get(f"/api/v1/applications/{token}/chats", params={"limit": 101})
    assert too_many.status_code == 422
    assert too_many.json()["error"]["field"] == "limit"


async def test_health(http: httpx.AsyncClient) -> None:
    report = (await http.get("/health")).json()
    assert report["status"] == "ok" and report["store"] == "ok"
    assert report == {
        "status": "ok",
        "store": "ok",
        "numbers": "ok",
        "pipeline": "ok",
        "search": "ok",
        "feed": "ok",
    }


async def test_the_newest_page_and_links_both_ways(http: httpx.AsyncClient) -> None:
    token = (await http.post("/api/v1/applications", json={"name": "back"})).json()["token"]
    await http.post(f"/api/v1/applications/{token}/chats", json={})
    base = f"/api/v1/applications/{token}/chats/1/messages"
    for n in range(1, 8):
        await http.post(base, json={"body": f"m{n}"})
    newest = await http.get(base, params={"last": 3})
    assert [m["number"] for m in newest.json()] == [5, 6, 7]
    links = httpx.Response(200, headers={"link": newest.headers["link"]}).links
    assert set(links) == {"prev"}
    older = await http.get(links["prev"]["url"])
    assert [m["number"] for m in older.json()] == [2, 3, 4]
    links = httpx.Response(200, headers={"link": older.headers["link"]}).links
    assert set(links) == {"prev", "next"}
    assert [m["number"] for m in (await http.get(links["prev"]["url"])).json()] == [1]
    assert [m["number"] for m in (await http.get(links["next"]["url"])).json()] == [5, 6, 7]
    # A forward page links forward only (clients that follow the one link keep working).
    first = await http.get(base, params={"limit": 2})
    second = await http.get(first.links["next"]["url"])
    assert [m["number"] for m in second.json()] == [3, 4]
    assert set(second.links) == {"next"}
    # Both ways at once and a bad `last` are refused.
    for params in ({"limit": 2, "last": 2}, {"last": "0"}, {"last": "x"}):
        refused = await http.get(base, params=params)
        assert refused.status_code == 422, params
        assert refused.json()["error"]["field"] == "last"
    # A search pages backward too: `last` alone is its oldest matches, still newest first,
    # and "prev" leads to the newer ones.
    oldest = await http.get(f"{base}/search", params={"q": "m", "last": 3})
    assert [m["number"] for m in oldest.json()] == [3, 2, 1]
    assert set(oldest.links) == {"prev"}
    newer = await http.get(oldest.links["prev"]["url"])
    assert [m["number"] for m in newer.json()] == [6, 5, 4]
    assert set(newer.links) == {"prev", "next"}
    assert [m["number"] for m in (await http.get(newer.links["prev"]["url"])).json()] == [7]
    assert [m["number"] for m in (await http.get(newer.links["next"]["url"])).json()] == [3, 2, 1]
