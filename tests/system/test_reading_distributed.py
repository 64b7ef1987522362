"""Read markers, unread counts and the inbox on two API processes and two workers (MySQL,
Redis, RabbitMQ, Elasticsearch, all real), under concurrent writers."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import httpx
import pytest

from tests.system.conftest import Cluster, bounded
from tests.system.test_users_hostile import _application, _gql, _sign

pytestmark = pytest.mark.system

SEND = """mutation($c: Int!, $b: String!) {
  createMessage(input: {chatNumber: $c, body: $b}) { message { number } } }"""
MARK = """mutation($c: Int!, $n: Int!) {
  markRead(input: {chatNumber: $c, number: $n}) { lastReadNumber } }"""
NEWEST = """query($c: Int!) { viewer { chat(number: $c) { lastMessage { number } } } }"""
MINE = """query($c: Int!) { viewer { unreadChatsCount unreadCount chat(number: $c) {
  lastReadNumber unreadCount } } }"""


async def _stored(http: httpx.AsyncClient, api: str, token: str, chat: int) -> dict[int, Any]:
    """Every stored message of the chat by number, with its author (the backend's view)."""
    found: dict[int, Any] = {}
    url: str | None = f"{api}/api/v1/applications/{token}/chats/{chat}/messages?limit=100"
    while url:
        response = await http.get(url)
        found.update({m["number"]: m["author"] for m in response.json()})
        url = response.links["next"]["url"] if "next" in response.links else None
    return found


async def _markers(http: httpx.AsyncClient, api: str, token: str, chat: int) -> dict[str, int]:
    response = await http.get(
        f"{api}/api/v1/applications/{token}/chats/{chat}/read_markers?limit=100"
    )
    if response.status_code == 404:  # not stored yet
        return {}
    assert response.status_code == 200, response.text
    return {m["user_id"]: m["last_read_number"] for m in response.json()}


async def test_unread_counts_equal_the_counted_rows_under_concurrent_writers_and_marks(
    cluster: Cluster,
) -> None:
    apis = [api.url for api in cluster.apis]
    users = [f"user{i}" for i in range(16)]
    async with httpx.AsyncClient(timeout=60) as http:
        app = await _application(http, apis[0])
        tokens = {user: _sign(app, user) for user in users}
        chats = []
        for people in (users, users[:8]):  # everyone's chat, and a smaller one
            made = await http.post(
                f"{apis[0]}/api/v1/applications/{app['token']}/chats",
                json={"members": people},
            )
            chats.append(made.json()["number"])
        marks: dict[tuple[str, int], int] = {}  # the highest each member marked
        own: dict[tuple[str, int], int] = {}  # the newest message each member wrote

        async def writer(user: str, i: int) -> None:
            for j in range(8):
                chat = chats[(i + j) % 2] if user in users[:8] else chats[0]
                api = apis[(i + j) % 2]
                sent = await _gql(http, api, SEND, tokens[user], c=chat, b=f"{user} {j}")
                assert "errors" not in sent, sent
                number = sent["data"]["createMessage"]["message"]["number"]
                own[(user, chat)] = max(own.get((user, chat), 0), number)

        async def reader(user: str, i: int) -> None:
            for j in range(6):
                chat = chats[j % 2] if user in users[:8] else chats[0]
                api = apis[(i + j + 1) % 2]
                newest = await _gql(http, api, NEWEST, tokens[user], c=chat)
                shown = newest["data"]["viewer"]["chat"]  # null until the chat is stored
                last = None if shown is None else shown["lastMessage"]
                if last is None:
                    continue
                number = random.randint(1, last["number"])  # any stored message
                marked = await _gql(http, api, MARK, tokens[user], c=chat, n=number)
                assert "errors" not in marked, marked
                marks[(user, chat)] = max(marks.get((user, chat), 0), number)
                await asyncio.sleep(random.random() / 10)

        await bounded(
            [writer(u, i) for i, u in enumerate(users)]
            + [reader(u, i) for i, u in enumerate(users)],
            32,
        )

        # Once stored, each marker is the highest mark or own message, and each count is
        # what counting the stored rows gives.
        members = {chats[0]: users, chats[1]: users[:8]}
        expected = {
            (user, chat): max(marks.get((user, chat), 0), own.get((user, chat), 0))
            for chat, people in members.items()
            for user in people
        }
        deadline = time.monotonic() + 60
        while True:
            stored = {chat: await _markers(http, apis[0], app["token"], chat) for chat in chats}
            found = {(u, c): stored[c].get(u) for u, c in expected}
            if found == expected:
                break
            assert time.monotonic() < deadline, {
                k: (found[k], v) for k, v in expected.items() if found[k] != v
            }
            await asyncio.sleep(0.2)
        rows = {chat: await _stored(http, apis[0], app["token"], chat) for chat in chats}
        assert sum(len(r) for r in rows.values()) == 16 * 8
        for user in users:
            totals = [0, 0]
            for chat in chats:
                if user not in members[chat]:
                    continue
                counted = sum(
                    1
                    for number, author in rows[chat].items()
                    if number > expected[(user, chat)] and author != user
                )
                for api in apis:
                    mine = await _gql(http, api, MINE, tokens[user], c=chat)
                    seen = mine["data"]["viewer"]["chat"]
                    assert (seen["lastReadNumber"], seen["unreadCount"]) == (
                        expected[(user, chat)],
                        counted,
                    ), (user, chat, api)
                totals[0] += counted > 0
                totals[1] += counted
            viewer = (await _gql(http, apis[1], MINE, tokens[user], c=chats[0]))["data"]["viewer"]
            assert [viewer["unreadChatsCount"], viewer["unreadCount"]] == totals, user


ACTIVITY = """query($c: Int!) { viewer { chat(number: $c) { lastActivityAt } } }"""
INBOX = """query($after: String) { viewer { chats(first: 4, after: $after) {
  nodes { number lastActivityAt } pageInfo { hasNextPage endCursor } } } }"""


async def _traverse(
    http: httpx.AsyncClient, api: str, token: str
) -> tuple[list[tuple[int, str]], str | None]:
    """Every page of the inbox, 4 at a time: what was shown, and the activity of the chat
    the last page started after (None for a single page)."""
    shown: list[tuple[int, str]] = []
    after, floor = None, None
    while True:
        answer = await _gql(http, api, INBOX, token, after=after)
        assert "errors" not in answer, answer
        page = answer["data"]["viewer"]["chats"]
        shown += [(n["number"], n["lastActivityAt"]) for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            return shown, floor
        after, floor = page["pageInfo"]["endCursor"], shown[-1][1]


async def test_the_inbox_pages_without_repeats_while_messages_arrive(cluster: Cluster) -> None:
    apis = [api.url for api in cluster.apis]
    async with httpx.AsyncClient(timeout=60) as http:
        app = await _application(http, apis[0])
        reader = _sign(app, "reader")
        chats = []
        for _ in range(30):
            made = await http.post(
                f"{apis[0]}/api/v1/applications/{app['token']}/chats",
                json={"members": ["reader"]},
            )
            chats.append(made.json()["number"])
        writing = True

        async def writer(i: int) -> None:
            while writing:
                chat = random.choice(chats)
                response = await http.post(
                    f"{apis[i % 2]}/api/v1/applications/{app['token']}/chats/{chat}/messages",
                    json={"body": f"from {i}"},
                )
                assert response.status_code == 201, response.text

        writers = [asyncio.ensure_future(writer(i)) for i in range(8)]
        try:
            for round_ in range(6):
                shown, floor = await _traverse(http, apis[round_ % 2], reader)
                numbers = [number for number, _ in shown]
                assert len(numbers) == len(set(numbers)), "a chat was shown twice"
                times = [at for _, at in shown]
                assert times == sorted(times, reverse=True), "pages went back up the list"
                # A chat not shown moved above the cursor while the pages were read: it
                # stood above where the last page began when that page was read.
                missing = set(chats) - set(numbers)
                assert not missing or floor is not None
                for number in missing:
                    later = await _gql(http, apis[0], ACTIVITY, reader, c=number)
                    at = later["data"]["viewer"]["chat"]["lastActivityAt"]
                    assert floor is not None and at >= floor, number
        finally:
            writing = False
            await asyncio.gather(*writers)
        await asyncio.sleep(2)  # the last writes stored
        settled, _ = await _traverse(http, apis[1], reader)
        assert sorted(number for number, _ in settled) == sorted(chats)
        assert [at for _, at in settled] == sorted((at for _, at in settled), reverse=True)
