"""Upgrading a database that holds rows, on both engines: what each migration gives them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text

from graphql_chat import migrations
from graphql_chat.adapters.sql_store import SqlStore
from tests.engines import mysql_database

# Revisions were clock readings: microseconds from Redis, nanoseconds in the embedded mode.
AT = datetime(2026, 11, 29, 23, 26, 1, 123456, tzinfo=UTC)
US = (AT - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@pytest.fixture(params=["sqlite", "mysql"])
async def at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database at migration 0004, before times."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        await asyncio.to_thread(migrations.upgrade, url, "0004")
        yield url
        return
    async with mysql_database("0004") as url:
        yield url


async def test_rows_written_before_times_get_them_from_their_revisions(at_0004: str) -> None:
    rows: list[dict[str, int | None]] = [
        # A create and a later update, revisions in microseconds (Redis).
        {"n": 1, "rev": US + 5_000_000, "created": US},
        # Nanoseconds (embedded), never updated.
        {"n": 2, "rev": (US + 1) * 1000, "created": (US + 1) * 1000},
        # An update stored before its create arrived: no creating draw known.
        {"n": 3, "rev": US + 7, "created": None},
    ]

    def write(conn: Connection) -> None:
        conn.execute(text("INSERT INTO applications(id, token, name) VALUES (1, 't', 'a')"))
        conn.execute(
            text("INSERT INTO chats(id, application_id, number) VALUES (7, 1, 1), (8, 1, 2)")
        )
        conn.execute(
            text(
                "INSERT INTO messages(chat_id, number, body, revision, created_revision) "
                "VALUES (7, :n, 'b', :rev, :created)"
            ),
            rows,
        )

    old = SqlStore(at_0004, "NORMAL")  # its connections know the SQLite index's functions
    await old.start()
    await old.write(write)
    await old.close()
    await asyncio.to_thread(migrations.upgrade, at_0004)

    store = SqlStore(at_0004, "NORMAL")
    await store.start()
    try:
        found = await store.messages_by_number([(7, 1), (7, 2), (7, 3)])
        micro = timedelta(microseconds=1)
        assert (found[(7, 1)].created_at, found[(7, 1)].updated_at) == (AT, AT + 5_000_000 * micro)
        assert (found[(7, 2)].created_at, found[(7, 2)].updated_at) == (AT + micro, AT + micro)
        assert (found[(7, 3)].created_at, found[(7, 3)].updated_at) == (AT + 7 * micro,) * 2
        chats = await store.chats_by_number([(1, 1), (1, 2)])
        assert chats[(1, 1)].created_at == AT  # its first message's time
        # No message to tell by: the time of the upgrade.
        assert abs(chats[(1, 2)].created_at - datetime.now(UTC)) < timedelta(minutes=1)
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "mysql"])
async def at_0007(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database at migration 0007, before users."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        await asyncio.to_thread(migrations.upgrade, url, "0007")
        yield url
        return
    async with mysql_database("0007") as url:
        yield url


async def test_users_come_to_existing_applications_and_go_back_down(at_0007: str) -> None:
    def write(conn: Connection) -> None:
        conn.execute(
            text("INSERT INTO applications(id, token, name) VALUES (1, 't1', 'a'), (2, 't2', 'b')")
        )
        conn.execute(
            text(
                "INSERT INTO chats(id, application_id, number, created_at) "
                "VALUES (7, 1, 1, '2026-11-29 23:26:01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO messages(chat_id, number, body, revision, created_at, updated_at) "
                "VALUES (7, 1, 'old', 1, '2026-11-29 23:26:01', '2026-11-29 23:26:01')"
            )
        )

    old = SqlStore(at_0007, "NORMAL")
    await old.start()
    await old.write(write)
    await old.close()
    await asyncio.to_thread(migrations.upgrade, at_0007)

    store = SqlStore(at_0007, "NORMAL")
    await store.start()
    try:
        apps = await store.applications_by_id([1, 2])
        keys = [await store.users.signing_keys_of(app_id) for app_id in (1, 2)]
        assert all(k is not None for k in keys)
        public = {apps[1].public_id, apps[2].public_id}
        secrets = {k.secret for k in keys if k is not None}
        assert len(public) == len(secrets) == 2 and all(p.startswith("app_") for p in public)
        assert all(len(s) >= 43 for s in secrets)
        assert apps[1].users_manage_chats
        [message] = (await store.list_messages([7], None, 10))[7]
        assert (message.body, message.author) == ("old", None)  # the backend's, as it was
        found = await store.users.signing_keys(apps[1].public_id)
        assert found is not None and found.application_id == 1
        await store.users.add_members(1, 1, ["ada"], 0)
    finally:
        await store.close()

    # And back down to 0007, then up again: the history runs both ways on both engines.
    await asyncio.to_thread(command.downgrade, migrations.alembic_config(at_0007), "0007")
    await asyncio.to_thread(migrations.upgrade, at_0007)
    again = SqlStore(at_0007, "NORMAL")
    await again.start()
    try:
        assert await again.users.member_of(1, "ada", [1]) == set()  # membership went down
        [message] = (await again.list_messages([7], None, 10))[7]
        assert message.body == "old"
    finally:
        await again.close()


@pytest.fixture(params=["sqlite", "mysql"])
async def at_0008(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database at migration 0008, before read markers."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        await asyncio.to_thread(migrations.upgrade, url, "0008")
        yield url
        return
    async with mysql_database("0008") as url:
        yield url


async def test_existing_members_have_read_what_was_stored_and_it_goes_back_down(
    at_0008: str,
) -> None:
    def write(conn: Connection) -> None:
        conn.execute(text("INSERT INTO applications(id, token, name) VALUES (1, 't1', 'a')"))
        conn.execute(
            text(
                "INSERT INTO chats(id, application_id, number, created_at) "
                "VALUES (7, 1, 1, '2026-11-29 23:26:01'), (8, 1, 2, '2026-11-29 23:26:01')"
            )
        )
        for number in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO messages(chat_id, number, body, revision, created_at, "
                    "updated_at) VALUES (7, :n, 'old', :n, '2026-11-29 23:26:01', "
                    "'2026-11-29 23:26:01')"
                ),
                {"n": number},
            )
        conn.execute(
            text(
                "INSERT INTO chat_members(application_id, chat_number, user_id, joined_at) "
                "VALUES (1, 1, 'ada', 1000), (1, 2, 'ada', 2000), (1, 3, 'ada', 3000)"
            )
        )

    old = SqlStore(at_0008, "NORMAL")
    await old.start()
    await old.write(write)
    await old.close()
    await asyncio.to_thread(migrations.upgrade, at_0008)

    store = SqlStore(at_0008, "NORMAL")
    await store.start()
    try:
        found = await store.reading.memberships(1, "ada", [1, 2, 3])
        # Read up to what each chat held; active since joining (chat 3 is not stored yet).
        assert {n: (m.last_read_number, m.top_number, m.active_at) for n, m in found.items()} == {
            1: (3, 3, 1000),
            2: (0, 0, 2000),
            3: (0, 0, 3000),
        }
        inbox = await store.reading.inbox(1, "ada", None, 10, False)
        assert [m.chat_number for m, _ in inbox] == [3, 2, 1]
        assert [chat is None for _, chat in inbox] == [True, False, False]
        assert await store.reading.unread_totals(1, "ada", 9999) == (0, 0)
    finally:
        await store.close()

    await asyncio.to_thread(command.downgrade, migrations.alembic_config(at_0008), "0008")
    await asyncio.to_thread(migrations.upgrade, at_0008)
    again = SqlStore(at_0008, "NORMAL")
    await again.start()
    try:
        assert await again.users.member_of(1, "ada", [1, 2, 3]) == {1, 2, 3}
    finally:
        await again.close()
