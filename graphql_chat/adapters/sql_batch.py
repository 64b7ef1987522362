"""The batch write: a batch of accepted events applied in one transaction, idempotent and
order-insensitive, counts bumped by the rows actually inserted, draws of retired epochs set
aside."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, select, tuple_, update

from graphql_chat.domain import ChatCreated, Event, MessageWritten, instant, now_micros
from graphql_chat.ports import Applied, IndexedMessage, StoredChat
from graphql_chat.tables import applications, chats, idempotency_keys, messages, numbering


def _application_epochs(conn: Connection, app_ids: set[int], locking: bool) -> dict[int, int]:
    """The applications' own epochs; with `locking`, their rows locked in id order."""
    query = select(applications.c.id, applications.c.epoch).where(
        applications.c.id.in_(sorted(app_ids))
    )
    if locking:
        query = query.order_by(applications.c.id).with_for_update()
    return {int(row.id): int(row.epoch) for row in conn.execute(query).all()}


def apply_batch(conn: Connection, events: Sequence[Event], locking: bool, purge: Purge) -> Applied:
    """Apply a batch in the caller's transaction: idempotent, order-insensitive, exact counts.

    Sync SQLAlchemy Core, so that one implementation serves a SQLite connection in the writer
    thread and a MySQL connection through `AsyncConnection.run_sync`.
    """
    # A shared lock on the numbering row: a recovery retiring an epoch waits for this batch,
    # and no batch after it applies a draw of the retired epoch. (SQLite's BEGIN IMMEDIATE
    # already made this transaction the only writer.)
    # Each application's row too, locked in id order (no deadlocks): it serialises writers
    # per application, and holds its own epoch (Redis Cluster), retired likewise.
    epoch = 0  # writes that carry no epoch (the embedded mode's) need not read it
    epochs: dict[int, int] = {}
    if any(e.epoch for e in events):
        epoch_query = select(numbering.c.epoch).where(numbering.c.id == 1)
        if locking:
            epoch_query = epoch_query.with_for_update(read=True)
        epoch = int(conn.execute(epoch_query).scalar() or 0)
        epochs = _application_epochs(conn, {e.application_id for e in events}, locking)
    set_aside: list[tuple[Event, str]] = []
    accepted: list[Event] = []
    for e in events:
        retired = max(epoch, epochs.get(e.application_id, 0))
        if 0 < e.epoch < retired:
            set_aside.append((e, f"drawn in numbering epoch {e.epoch}, retired (now {retired})"))
        else:
            accepted.append(e)
    # When each chat was created, as far as the batch knows: its create's time, else its first
    # message's (a message may arrive before its chat's create, never be accepted before it).
    now = now_micros()
    chat_times: dict[tuple[int, int], int] = {}
    for e in accepted:
        key, at = (e.application_id, e.chat_number), e.at or now
        chat_times[key] = min(chat_times.get(key, at), at)
    chat_keys = set(chat_times)
    app_ids = {app_id for app_id, _ in chat_keys} - epochs.keys()
    if locking and app_ids:  # not locked above (writes that carry no epoch)
        _application_epochs(conn, app_ids, locking)
    created_chats = {
        (e.application_id, e.chat_number): e.at or now
        for e in accepted
        if isinstance(e, ChatCreated)
    }
    chat_ids, new_chats = _ensure_chats(conn, chat_times, created_chats)
    written = _write_messages(
        conn, chat_ids, [e for e in accepted if isinstance(e, MessageWritten)], set_aside, now
    )
    refused = {id(e) for e, _ in set_aside}
    claimed = [e for e in accepted if e.claim is not None and id(e) not in refused]
    _keep_claims(conn, claimed, now, purge)
    if set_aside:
        conn.execute(
            update(numbering)
            .where(numbering.c.id == 1)
            .values(set_aside=numbering.c.set_aside + len(set_aside))
        )
    return Applied(
        written.indexed,
        set_aside,
        created=written.created,
        updated=written.updated,
        chats=[
            StoredChat(app_id, number, chat_ids[(app_id, number)], instant(chat_times[key]))
            for key in new_chats
            for app_id, number in (key,)
        ],
    )


def _ensure_chats(
    conn: Connection, times: dict[tuple[int, int], int], created: dict[tuple[int, int], int]
) -> tuple[dict[tuple[int, int], int], list[tuple[int, int]]]:
    """Chat ids for the keys of `times`, inserting the chats not persisted yet (a message may
    come first) created at their time; and the keys it inserted, in order. A chat's create
    arriving after a message inserted it (`created`: their times) sets its time."""
    ids = _chat_ids(conn, set(times))
    missing = sorted(times.keys() - ids.keys())
    late = sorted(key for key in created if key in ids)
    if late:
        conn.execute(
            update(chats)
            .where(chats.c.id == bindparam("chat"), chats.c.created_at > bindparam("at"))
            .values(created_at=bindparam("at")),
            [{"chat": ids[key], "at": instant(created[key])} for key in late],
        )
    if missing:
        conn.execute(
            chats.insert(),
            [
                {
                    "application_id": a,
                    "number": n,
                    "messages_count": 0,
                    "created_at": instant(times[(a, n)]),
                }
                for a, n in missing
            ],
        )
        per_app = Counter(app_id for app_id, _ in missing)
        conn.execute(
            update(applications)
            .where(applications.c.id == bindparam("app_id"))
            .values(chats_count=applications.c.chats_count + bindparam("added")),
            [{"app_id": a, "added": n} for a, n in sorted(per_app.items())],
        )
        ids |= _chat_ids(conn, set(missing))
    return ids, missing


def _chat_ids(conn: Connection, keys: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    if not keys:
        return {}
    query = select(chats.c.id, chats.c.application_id, chats.c.number).where(
        tuple_(chats.c.application_id, chats.c.number).in_(sorted(keys))
    )
    return {(r.application_id, r.number): r.id for r in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class _Written:
    indexed: list[IndexedMessage]  # every message the batch names, as it now stands
    created: list[IndexedMessage]  # rows this transaction inserted
    updated: list[IndexedMessage]  # rows whose body this transaction replaced


def _write_messages(
    conn: Connection,
    chat_ids: dict[tuple[int, int], int],
    written: list[MessageWritten],
    set_aside: list[tuple[Event, str]],
    now: int,
) -> _Written:
    """Upsert by revision; a create whose number holds a message of another draw is refused
    (appended to `set_aside`) instead of overwriting it. A message's `created_at` is its
    create's time (an update's until a create that arrives late sets it), its `updated_at`
    the time of the write whose body it holds."""
    if not written:
        return _Written([], [], [])
    keyed: dict[tuple[int, int], list[MessageWritten]] = {}
    for e in written:
        keyed.setdefault((chat_ids[(e.application_id, e.chat_number)], e.number), []).append(e)
    stored_query = select(
        messages.c.chat_id,
        messages.c.number,
        messages.c.revision,
        messages.c.body,
        messages.c.created_revision,
        messages.c.created_at,
        messages.c.updated_at,
    ).where(tuple_(messages.c.chat_id, messages.c.number).in_(sorted(keyed)))
    rows = {(r.chat_id, r.number): r for r in conn.execute(stored_query)}
    wanted: dict[tuple[int, int], MessageWritten] = {}
    # The draw (create revision) that owns each number, and when it was accepted.
    creators: dict[tuple[int, int], tuple[int, int]] = {}
    for key, found in keyed.items():
        row = rows.get(key)
        owner = row.created_revision if row is not None else None
        for e in sorted(found, key=lambda e: e.revision):
            if e.created:
                if owner is None:
                    owner = e.revision
                    if row is None or row.created_revision is None:
                        creators[key] = (e.revision, e.at or now)
                elif owner != e.revision:
                    set_aside.append((e, f"message {e.number} already holds another draw's create"))
                    continue
            if key not in wanted or wanted[key].revision < e.revision:
                wanted[key] = e
    stored = {key: row.revision for key, row in rows.items()}
    new = [key for key in sorted(wanted) if key not in stored]
    newer = [key for key in sorted(wanted) if key in stored and stored[key] < wanted[key].revision]
    # Each message's times once this transaction is done.
    times: dict[tuple[int, int], tuple[datetime, datetime]] = {
        key: (row.created_at, row.updated_at) for key, row in rows.items()
    }
    for key in new:
        at = instant(wanted[key].at or now)
        times[key] = (instant(creators[key][1]) if key in creators else at, at)
    for key in newer:
        times[key] = (times[key][0], instant(wanted[key].at or now))
    late = sorted(key for key in creators if key in rows)  # creates after an update's insert
    for key in late:
        times[key] = (instant(creators[key][1]), times[key][1])
    if new:
        conn.execute(
            messages.insert(),
            [
                {
                    "chat_id": c,
                    "number": n,
                    "body": wanted[(c, n)].body,
                    "revision": wanted[(c, n)].revision,
                    "created_revision": creators[(c, n)][0] if (c, n) in creators else None,
                    "created_at": times[(c, n)][0],
                    "updated_at": times[(c, n)][1],
                }
                for c, n in new
            ],
        )
        per_chat = Counter(chat_id for chat_id, _ in new)
        conn.execute(
            update(chats)
            .where(chats.c.id == bindparam("chat"))
            .values(messages_count=chats.c.messages_count + bindparam("added")),
            [{"chat": c, "added": n} for c, n in sorted(per_chat.items())],
        )
    if newer:
        conn.execute(
            update(messages)
            .where(
                messages.c.chat_id == bindparam("chat"),
                messages.c.number == bindparam("num"),
                messages.c.revision < bindparam("rev"),
            )
            .values(
                body=bindparam("new_body"), revision=bindparam("rev"), updated_at=bindparam("at")
            ),
            [
                {
                    "chat": c,
                    "num": n,
                    "new_body": wanted[(c, n)].body,
                    "rev": wanted[(c, n)].revision,
                    "at": times[(c, n)][1],
                }
                for c, n in newer
            ],
        )
    if late:
        conn.execute(
            update(messages)
            .where(messages.c.chat_id == bindparam("chat"), messages.c.number == bindparam("num"))
            .values(created_revision=bindparam("owner"), created_at=bindparam("at")),
            [
                {"chat": c, "num": n, "owner": creators[(c, n)][0], "at": times[(c, n)][0]}
                for c, n in late
            ],
        )

    changed = {*new, *newer}

    def now_standing(key: tuple[int, int]) -> IndexedMessage:
        source = wanted[key] if key in changed else rows[key]
        return IndexedMessage(key[0], key[1], source.body, source.revision, *times[key])

    # Every message of the batch as it now stands, written or not: a replay after a worker
    # died between the commit and the indexing must index again (external versions make a
    # repeat harmless).
    return _Written(
        [now_standing(key) for key in sorted(wanted)],
        [now_standing(key) for key in new],
        [now_standing(key) for key in newer],
    )


class Purge:
    """When expired claims were last deleted, by one store (at most every `every` seconds)."""

    def __init__(self, every: float = 60.0) -> None:
        self._every = every
        self._last = float("-inf")

    def due(self) -> bool:
        if time.monotonic() - self._last <= self._every:
            return False
        self._last = time.monotonic()
        return True


def _keep_claims(conn: Connection, claimed: Sequence[Event], now: int, purge: Purge) -> None:
    """Store the claims of a batch's creates sent with idempotency keys (a claim stored
    already, by a replay or a retry's resubmission, stays as it is); now and then, forget
    the expired ones."""
    if not claimed:
        return
    rows = []
    for e in claimed:
        assert e.claim is not None
        at = e.at or now
        rows.append(
            {
                "application_id": e.application_id,
                "key": e.claim.key,
                "fingerprint": e.claim.fingerprint,
                "chat_number": e.chat_number if isinstance(e, MessageWritten) else 0,
                "number": e.number if isinstance(e, MessageWritten) else e.chat_number,
                "revision": e.revision if isinstance(e, MessageWritten) else 0,
                "epoch": e.epoch,
                "at": at,
                "expires": at + e.claim.window * 1_000_000,
            }
        )
    statement = (
        idempotency_keys.insert()
        .prefix_with("OR IGNORE", dialect="sqlite")
        .prefix_with("IGNORE", dialect="mysql")
        .prefix_with("IGNORE", dialect="mariadb")
    )
    conn.execute(statement, rows)
    if purge.due():
        conn.execute(idempotency_keys.delete().where(idempotency_keys.c.expires <= now))
