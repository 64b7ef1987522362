"""The store contract: one transaction per batch, idempotent, order-insensitive, exact counts."""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from graphql_chat.adapters.sql_ledger import SqlLedger
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import (
    ChatCreated,
    Event,
    MessageWritten,
    ReadMarked,
    claim,
    micros,
    new_token,
    now_micros,
)
from graphql_chat.errors import TokenClash


async def _app(store: SqlStore) -> int:
    return (await store.insert_application(new_token(), "app")).id


async def _chats_count(store: SqlStore, app: int) -> int:
    """The application's count, read as the API lists applications."""
    [application] = await store.list_applications(app - 1, 1)
    assert application.id == app
    return application.chats_count


async def test_token_is_unique(store: SqlStore) -> None:
    token = new_token()
    await store.insert_application(token, "first")
    with pytest.raises(TokenClash):
        await store.insert_application(token, "second")
    assert [a.name for a in await store.list_applications(None, 10)] == ["first"]


async def test_apply_creates_rows_and_counts(store: SqlStore) -> None:
    app = await _app(store)
    changed = await store.apply(
        [
            ChatCreated(app, 1),
            ChatCreated(app, 2),
            MessageWritten(app, 1, 1, "one", 10),
            MessageWritten(app, 1, 2, "two", 11),
        ]
    )
    assert [(m.number, m.body) for m in changed.indexed] == [(1, "one"), (2, "two")]
    assert await _chats_count(store, app) == 2
    chats = await store.chats_by_number([(app, 1), (app, 2)])
    assert chats[(app, 1)].messages_count == 2
    assert chats[(app, 2)].messages_count == 0


async def test_apply_is_idempotent(store: SqlStore) -> None:
    app = await _app(store)
    batch: list[Event] = [ChatCreated(app, 1), MessageWritten(app, 1, 1, "hello", 5)]
    first = await store.apply(batch)
    # A replay changes nothing and reports the messages as they stand (for the index).
    assert (await store.apply(batch)).indexed == first.indexed
    assert (await store.apply(list(reversed(batch)))).indexed == first.indexed
    stale = await store.apply([MessageWritten(app, 1, 1, "older", 4)])
    assert [(m.body, m.revision) for m in stale.indexed] == [("hello", 5)]
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert chat.messages_count == 1
    assert await _chats_count(store, app) == 1


async def test_events_in_any_order_converge(store: SqlStore) -> None:
    app = await _app(store)
    events: list[Event] = [ChatCreated(app, 1)]
    for number in range(1, 21):
        events += [MessageWritten(app, 1, number, f"v{rev}", rev) for rev in range(1, 4)]
    random.Random(7).shuffle(events)
    # Split into batches arriving in a scrambled order, as from several workers.
    for start in range(0, len(events), 7):
        await store.apply(events[start : start + 7])
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert chat.messages_count == 20
    stored = (await store.list_messages([chat.id], None, 100))[chat.id]
    assert [m.number for m in stored] == list(range(1, 21))
    assert {m.body for m in stored} == {"v3"}


async def test_message_before_its_chat(store: SqlStore) -> None:
    app = await _app(store)
    await store.apply([MessageWritten(app, 3, 1, "early", 1)])
    await store.apply([ChatCreated(app, 3)])
    chat = (await store.chats_by_number([(app, 3)]))[(app, 3)]
    assert chat.messages_count == 1
    assert await _chats_count(store, app) == 1


async def test_pages_of_many_parents_in_one_call(store: SqlStore) -> None:
    apps = [await _app(store) for _ in range(3)]
    await store.apply([ChatCreated(a, n) for a in apps for n in range(1, 6)])
    pages = await store.list_chats(apps, after=2, limit=2)
    assert {a: [c.number for c in pages[a]] for a in apps} == {a: [3, 4] for a in apps}
    assert await store.max_chat_number(apps[0]) == 5
    assert await store.max_chat_number(10_000) == 0


async def test_pages_backward_newest_first_for_many_parents(store: SqlStore) -> None:
    apps = [await _app(store) for _ in range(3)]
    await store.apply([ChatCreated(a, n) for a in apps for n in range(1, 6)])
    newest = await store.list_chats(apps, after=None, limit=2, backward=True)
    assert {a: [c.number for c in newest[a]] for a in apps} == {a: [5, 4] for a in apps}
    before = await store.list_chats(apps, after=4, limit=10, backward=True)
    assert {a: [c.number for c in before[a]] for a in apps} == {a: [3, 2, 1] for a in apps}
    chat = (await store.chats_by_number([(apps[0], 1)]))[(apps[0], 1)]
    await store.apply([MessageWritten(apps[0], 1, n, f"m{n}", n) for n in range(1, 8)])
    one = await store.list_messages([chat.id], 7, 3, backward=True)
    assert [m.number for m in one[chat.id]] == [6, 5, 4]
    listed = await store.list_applications(None, 2, backward=True)
    assert [a.id for a in listed] == sorted(apps, reverse=True)[:2]
    older = await store.list_applications(max(apps), 10, backward=True)
    assert [a.id for a in older][:2] == sorted(apps, reverse=True)[1:]


async def test_rename_application(store: SqlStore) -> None:
    token = new_token()
    await store.insert_application(token, "old")
    renamed = await store.rename_application(token, "new")
    assert renamed is not None and renamed.name == "new"
    assert await store.rename_application(new_token(), "x") is None


async def test_a_create_never_overwrites_another_draws_message(store: SqlStore) -> None:
    """A create names its draw (its revision): a second create of the same number from another
    draw is set aside, whatever the order; replays and updates go through."""
    app = await _app(store)
    first = MessageWritten(app, 1, 1, "first draw", 10, created=True)
    other = MessageWritten(app, 1, 1, "second draw", 20, created=True)
    assert (await store.apply([ChatCreated(app, 1), first])).set_aside == []
    applied = await store.apply([other])
    assert [event for event, _ in applied.set_aside] == [other]
    assert (await store.apply([first])).set_aside == []  # a replay
    edit = MessageWritten(app, 1, 1, "edited", 30)
    assert (await store.apply([edit])).set_aside == []
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert (await store.messages_by_number([(chat.id, 1)]))[(chat.id, 1)].body == "edited"
    assert chat.messages_count == 1
    assert (await SqlLedger(store).numbering()).set_aside == 1


async def test_an_update_before_its_create_still_guards_the_number(store: SqlStore) -> None:
    app = await _app(store)
    update = MessageWritten(app, 1, 1, "edited", 50)
    create = MessageWritten(app, 1, 1, "created", 40, created=True)
    impostor = MessageWritten(app, 1, 1, "impostor", 45, created=True)
    await store.apply([ChatCreated(app, 1), update])
    # In one batch, the earliest draw owns the number (its create arrived with the other).
    applied = await store.apply([impostor, create])
    assert [event for event, _ in applied.set_aside] == [impostor]
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert (await store.messages_by_number([(chat.id, 1)]))[(chat.id, 1)].body == "edited"
    later = await store.apply([MessageWritten(app, 1, 1, "again", 60, created=True)])
    assert len(later.set_aside) == 1


async def test_draws_of_a_retired_epoch_are_set_aside(store: SqlStore) -> None:
    app = await _app(store)
    epoch = (await SqlLedger(store).numbering()).epoch
    assert await SqlLedger(store).open_epoch(epoch, await SqlLedger(store).fencing_token())
    assert await SqlLedger(store).open_epoch(epoch + 1, await SqlLedger(store).fencing_token())
    retired: list[Event] = [
        ChatCreated(app, 1, epoch + 1),
        MessageWritten(app, 1, 1, "late", 5, epoch + 1, created=True),
    ]
    current: list[Event] = [
        ChatCreated(app, 2, epoch + 2),
        MessageWritten(app, 2, 1, "ok", 6, epoch + 2),
    ]
    applied = await store.apply(retired + current)
    assert [event for event, _ in applied.set_aside] == retired
    assert [m.body for m in applied.indexed] == ["ok"]
    assert set(await store.chats_by_number([(app, 1), (app, 2)])) == {(app, 2)}
    state = await SqlLedger(store).numbering()
    assert (state.epoch, state.set_aside, state.recovering) == (epoch + 2, 2, False)


async def test_a_batch_reports_what_it_created_and_updated_and_a_replay_nothing(
    store: SqlStore,
) -> None:
    """What subscribers are told: the rows this transaction inserted or changed, in chat and
    number order; a replay, a stale revision or an unchanged chat report nothing."""
    app = await _app(store)
    first = await store.apply(
        [
            MessageWritten(app, 1, 2, "two", 2, created=True),
            ChatCreated(app, 1),
            MessageWritten(app, 1, 1, "one", 1, created=True),
        ]
    )
    chat_id = (await store.chats_by_number([(app, 1)]))[(app, 1)].id
    assert [(c.application_id, c.number, c.chat_id) for c in first.chats] == [(app, 1, chat_id)]
    assert [(m.number, m.body) for m in first.created] == [(1, "one"), (2, "two")]
    assert first.updated == []
    replay = await store.apply(
        [ChatCreated(app, 1), MessageWritten(app, 1, 1, "one", 1, created=True)]
    )
    assert (replay.chats, replay.created, replay.updated) == ([], [], [])
    edit = await store.apply(
        [MessageWritten(app, 1, 2, "two, edited", 5), MessageWritten(app, 1, 1, "stale", 0)]
    )
    assert edit.created == []
    assert [(m.number, m.body, m.revision) for m in edit.updated] == [(2, "two, edited", 5)]


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_a_page_of_many_parents_reads_only_its_rows(store: SqlStore) -> None:
    """The rows MySQL reads for one page of several chats (its handler counters), with one
    chat of 3,000 messages among them: about the rows returned, not the chats' sizes."""
    from graphql_chat.adapters.sql_pages import pages_query
    from graphql_chat.tables import messages

    app = await _app(store)
    await store.apply([ChatCreated(app, n) for n in (1, 2, 3)])
    for start in range(1, 3001, 1000):
        await store.apply(
            [MessageWritten(app, 1, n, "m", n, created=True) for n in range(start, start + 1000)]
        )
    await store.apply(
        [MessageWritten(app, c, n, "m", n, created=True) for c in (2, 3) for n in range(1, 11)]
    )
    found = await store.chats_by_number([(app, n) for n in (1, 2, 3)])
    ids = [found[(app, n)].id for n in (1, 2, 3)]

    def rows_read(after: int | None) -> Callable[[Connection], tuple[int, int]]:
        def run(conn: Connection) -> tuple[int, int]:
            conn.execute(text("FLUSH STATUS"))
            query, params = pages_query(messages, ids, after, 5)
            returned = len(conn.execute(query, params).all())
            status = conn.execute(text("SHOW SESSION STATUS LIKE 'Handler_read%'")).all()
            return returned, sum(int(row[1]) for row in status)

        return run

    for after in (None, 2000):
        returned, read = await store.read(rows_read(after))
        assert returned == (5 if after else 15)
        assert read < 100, f"{read} rows read for a page of {returned}"


T0 = 1_764_469_271_000_000  # 2025-11-30T02:21:11Z, in microseconds


async def _message_times(store: SqlStore, app: int, number: int = 1) -> tuple[int, int]:
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    found = (await store.messages_by_number([(chat.id, number)]))[(chat.id, number)]
    return micros(found.created_at), micros(found.updated_at)


async def test_times_are_the_acceptance_times_the_events_carry(store: SqlStore) -> None:
    """A chat's and a message's times are those of their accepted writes, to the
    microsecond, whatever order the writes arrive in; a replay changes none."""
    app = await _app(store)
    chat = ChatCreated(app, 1, at=T0)
    create = MessageWritten(app, 1, 1, "first", 10, created=True, at=T0 + 5)
    edit = MessageWritten(app, 1, 1, "edited", 11, at=T0 + 9)
    applied = await store.apply([chat, create])
    assert [micros(c.created_at) for c in applied.chats] == [T0]
    assert [(micros(m.created_at), micros(m.updated_at)) for m in applied.created] == [
        (T0 + 5, T0 + 5)
    ]
    applied = await store.apply([edit])
    assert [(micros(m.created_at), micros(m.updated_at)) for m in applied.updated] == [
        (T0 + 5, T0 + 9)
    ]
    await store.apply([create, edit, chat])  # a replay
    assert await _message_times(store, app) == (T0 + 5, T0 + 9)
    listed = (await store.list_chats([app], None, 10))[app]
    assert [micros(c.created_at) for c in listed] == [T0]

    # Out of order: the update and a message first, their chat's and message's creates later.
    other = await _app(store)
    late_edit = MessageWritten(other, 1, 1, "edited", 21, at=T0 + 30)
    await store.apply([late_edit])
    assert await _message_times(store, other) == (T0 + 30, T0 + 30)  # all it knows yet
    applied = await store.apply(
        [
            ChatCreated(other, 1, at=T0 + 10),
            MessageWritten(other, 1, 1, "x", 20, created=True, at=T0 + 20),
        ]
    )
    assert await _message_times(store, other) == (T0 + 20, T0 + 30)
    assert [(m.body, micros(m.updated_at)) for m in applied.indexed] == [("edited", T0 + 30)]
    chat_row = (await store.chats_by_number([(other, 1)]))[(other, 1)]
    assert micros(chat_row.created_at) == T0 + 10
    await store.apply([ChatCreated(other, 1, at=T0 + 10)])  # replayed: no change
    assert micros((await store.chats_by_number([(other, 1)]))[(other, 1)].created_at) == T0 + 10


async def test_writes_without_a_time_take_the_stores_clock(store: SqlStore) -> None:
    """Events of a publisher older than times (`at` 0) are stored at the time of the commit."""
    app = await _app(store)
    before = now_micros()
    await store.apply([ChatCreated(app, 1), MessageWritten(app, 1, 1, "old", 5, created=True)])
    after = now_micros()
    created, updated = await _message_times(store, app)
    assert before <= created == updated <= after
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert before <= micros(chat.created_at) <= after


async def test_claims_are_stored_with_their_creates_until_they_expire(store: SqlStore) -> None:
    app = await _app(store)
    t0 = now_micros()  # claims live from their draw's time
    chat_claim = claim("c", 60, "chat")
    key = claim("k", 60, "message", 1, "hello")
    create = MessageWritten(app, 1, 1, "hello", 7, 0, True, t0 + 5, key)
    await store.apply([ChatCreated(app, 1, 0, t0, chat_claim), create])
    await store.apply([create])  # a retry's resubmission, or a replay: stored once
    found = await store.claimed(app, key.key)
    assert found is not None
    assert (found.chat_number, found.number, found.revision, found.at) == (1, 1, 7, t0 + 5)
    assert (found.fingerprint, found.expires) == (key.fingerprint, t0 + 5 + 60_000_000)
    chat_found = await store.claimed(app, chat_claim.key)
    assert chat_found is not None and (chat_found.chat_number, chat_found.number) == (0, 1)
    assert await store.claimed(app + 1, key.key) is None  # per application
    # A create refused (another draw holds the number) claims nothing.
    other = claim("other", 60, "message", 1, "x")
    refused = await store.apply([MessageWritten(app, 1, 1, "x", 9, 0, True, t0 + 9, other)])
    assert len(refused.set_aside) == 1
    assert await store.claimed(app, other.key) is None
    # Past its window a claim is gone.
    now = now_micros()
    old = claim("old", 1, "message", 1, "y")
    await store.apply([MessageWritten(app, 1, 2, "y", 10, 0, True, now - 2_000_000, old)])
    assert await store.claimed(app, old.key) is None
    listed = [c.key async for batch in SqlLedger(store).iter_claims(1) for c in batch]
    assert sorted(listed) == sorted([chat_claim.key, key.key])
    # Of some applications only (a recovery on Redis Cluster).
    other_app = await _app(store)
    elsewhere = claim("k", 60, "chat")
    await store.apply([ChatCreated(other_app, 1, 0, now, elsewhere)])
    of_app = [c.key async for batch in SqlLedger(store).iter_claims(1, [app]) for c in batch]
    assert sorted(of_app) == sorted([chat_claim.key, key.key])
    of_other = [
        (c.application_id, c.key)
        async for batch in SqlLedger(store).iter_claims(5, [other_app])
        for c in batch
    ]
    assert of_other == [(other_app, elsewhere.key)]


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_a_page_read_that_finds_the_database_locked_waits_on_a_thread(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedded, a page is read on the event loop's own thread, with no busy timeout: a read
    that finds the database locked (SQLite's answer at once) is read again on a read thread,
    which may wait, and answers the same."""
    app = await _app(store)
    await store.apply(
        [ChatCreated(app, 1), *(MessageWritten(app, 1, n, f"m{n}", n) for n in range(1, 6))]
    )
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    on_loop = await store.list_messages([chat.id], 1, 3)
    assert [m.number for m in on_loop[chat.id]] == [2, 3, 4]

    threads: list[str] = []

    def locked(sql: str, params: object) -> list[object]:
        threads.append(threading.current_thread().name)
        raise sqlite3.OperationalError("database is locked")

    def heard(sql: str) -> None:
        threads.append(threading.current_thread().name)

    monkeypatch.setattr(store._db._loop_reader, "rows", locked)  # type: ignore[attr-defined]
    stop = store.on_statement(heard)
    try:
        again = await store.list_messages([chat.id], 1, 3)
    finally:
        stop()
    assert again == on_loop
    main = threading.current_thread().name
    # Heard on the loop, refused there, then run on a read thread.
    assert threads[:2] == [main, main] and threads[2].startswith("sqlite-reader"), threads


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_a_read_on_a_connection_the_server_closed_is_read_again(store: SqlStore) -> None:
    """Pooled connections are not pinged before use (a round trip more per read): when the
    server has closed them (a restart, an idle timeout; here `KILL`), a read is read again
    on a new connection instead of failing, on either pool (page reads have their own)."""
    app = await _app(store)
    await store.apply([ChatCreated(app, 1)])

    def connection_id(conn: Connection) -> int:
        return int(conn.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one())

    first = await store.read(connection_id)
    assert (await store.chats_by_number([(app, 1)]))[(app, 1)].number == 1
    database = make_url(store.url).database
    async with AsyncExitStack() as stack:
        admin = create_async_engine(store.url)
        stack.push_async_callback(admin.dispose)
        async with admin.begin() as conn:
            pooled = (
                await conn.execute(
                    text(
                        "SELECT id FROM information_schema.processlist "
                        "WHERE db = :db AND id <> CONNECTION_ID()"
                    ),
                    {"db": database},
                )
            ).scalars()
            killed = list(pooled)
            for connection in killed:
                await conn.execute(text(f"KILL {int(connection)}"))
    assert first in killed and len(killed) >= 2
    # The pooled connections come first, dead; the reads still answer.
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert chat.number == 1
    assert [c.number for c in (await store.list_chats([app], None, 5))[app]] == [1]
    assert await store.read(connection_id) not in killed


async def test_a_pages_times_read_as_text_are_the_times_as_the_api_writes_them(
    store: SqlStore,
) -> None:
    """Pages keep SQLite's text of a time to answer with (no formatting per row): it must say
    what `iso` says of the parsed time, edited or not, on either database."""
    app = await _app(store)
    created, edited = 1_764_470_471_000_001, 1_764_470_472_999_999
    await store.apply(
        [
            ChatCreated(app, 1, at=created),
            MessageWritten(app, 1, 1, "never edited", created, created=True, at=created),
            MessageWritten(app, 1, 2, "edited", created + 1, created=True, at=created + 1),
        ]
    )
    await store.apply([MessageWritten(app, 1, 2, "edited once", edited, at=edited)])
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    for backward in (False, True):
        page = (await store.list_messages([chat.id], None, 10, backward))[chat.id]
        assert sorted(m.number for m in page) == [1, 2]
        times = {m.number: (micros(m.created_at), micros(m.updated_at)) for m in page}
        assert times == {1: (created, created), 2: (created + 1, edited)}


async def test_marks_and_counts_follow_the_stored_rows(store: SqlStore) -> None:
    """Members' rows follow their chats' messages in the batch that stores them; marks move
    forward only, never past the newest message; counts are of the stored rows."""
    at = 1_796_000_000_000_000  # a time, in microseconds
    app = (await store.insert_application(new_token(), "reading")).id
    await store.apply([ChatCreated(app, 1), ChatCreated(app, 2)])
    await store.users.add_members(app, 1, ["ada", "bob"], 1)
    await store.users.add_members(app, 2, ["ada"], 2)
    writes: list[Event] = [
        MessageWritten(app, 1, n, f"m{n}", n, created=True, at=at + n, author=who)
        for n, who in ((1, "bob"), (2, "bob"), (3, "ada"), (4, None), (5, "bob"))
    ]
    await store.apply(writes)
    await store.apply([MessageWritten(app, 2, 1, "x", 9, created=True, at=at + 9, author="bob")])
    found = await store.reading.memberships(app, "ada", [1, 2])
    # Ada's own message 3 read her up to it; the chat she was in last is on top.
    assert (found[1].last_read_number, found[1].top_number) == (3, 5)
    inbox = await store.reading.inbox(app, "ada", None, 10, False)
    assert [m.chat_number for m, _ in inbox] == [2, 1]
    chat_ids = {m.chat_number: chat.id for m, chat in inbox if chat is not None}
    assert await store.reading.unread_counts("ada", {chat_ids[1]: 3, chat_ids[2]: 0}) == {
        chat_ids[1]: 2,
        chat_ids[2]: 1,
    }
    assert await store.reading.unread_totals(app, "ada", 999) == (2, 3)
    assert await store.reading.unread_totals(app, "ada", 2) == (2, 2)  # counted up to 2
    # A burst of marks, one below the marker, one past the newest message; then back.
    await store.apply([ReadMarked(app, 1, "ada", n, at + 20 + i) for i, n in enumerate((4, 2, 99))])
    assert (await store.reading.memberships(app, "ada", [1]))[1].last_read_number == 5
    await store.apply([ReadMarked(app, 1, "ada", 1, at + 30, back=True)])
    await store.apply([ReadMarked(app, 1, "ada", 5, at + 25)])  # made before the move back
    after = (await store.reading.memberships(app, "ada", [1]))[1]
    assert (after.last_read_number, after.read_at) == (1, at + 30)
    assert await store.reading.unread_counts("ada", {chat_ids[1]: 1}) == {chat_ids[1]: 3}
