"""The batch write, executed: `SqlBatches`, the `Batches` port the writer holds, applies a
batch of accepted events in one transaction. What it does to each row is the plan's
(`batch_plan.py`, where its rules are unit-tested); here are the reads the plan needs, the
locks, and the statements it fills in."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, case, select, tuple_, update
from sqlalchemy.exc import StatementError

from graphql_chat.adapters.batch_plan import (
    Key,
    MemberKey,
    MemberRow,
    Params,
    StoredMessage,
    claim_rows,
    marks_of,
    message_keys,
    plan_activity,
    plan_chats,
    plan_marks,
    plan_messages,
    screen,
)
from graphql_chat.adapters.sql_database import Database
from graphql_chat.domain import Event, MessageWritten, ReadMarked, now_micros
from graphql_chat.errors import Unstorable
from graphql_chat.ports import Applied
from graphql_chat.tables import (
    applications,
    chat_members,
    chats,
    idempotency_keys,
    messages,
    numbering,
)


class SqlBatches:
    """Batches applied on `database`, one transaction each."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._locking = not database.is_sqlite  # SQLite's writer is alone already
        self._purge = Purge()

    async def apply(self, events: Sequence[Event]) -> Applied:
        try:
            return await self._db.write(
                lambda conn: apply_batch(conn, events, self._locking, self._purge)
            )
        except StatementError as error:  # a value the driver or the database refuses
            raise Unstorable() from error


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
    accepted, set_aside = screen(events, epoch, epochs)
    now = now_micros()
    app_ids = {e.application_id for e in accepted} - epochs.keys()
    if locking and app_ids:  # not locked above (writes that carry no epoch)
        _application_epochs(conn, app_ids, locking)

    marking = [e for e in accepted if isinstance(e, ReadMarked)]
    accepted = [e for e in accepted if not isinstance(e, ReadMarked)]
    ids = _chat_ids(conn, {(e.application_id, e.chat_number) for e in accepted})
    chat_plan = plan_chats(accepted, ids, now)
    if chat_plan.late:
        conn.execute(
            update(chats)
            .where(chats.c.id == bindparam("chat"), chats.c.created_at > bindparam("at"))
            .values(created_at=bindparam("at")),
            chat_plan.late,
        )
    if chat_plan.inserts:
        conn.execute(chats.insert(), chat_plan.inserts)
        conn.execute(
            update(applications)
            .where(applications.c.id == bindparam("app_id"))
            .values(chats_count=applications.c.chats_count + bindparam("added")),
            chat_plan.counts,
        )
        ids |= _chat_ids(conn, set(chat_plan.missing))

    written = [e for e in accepted if isinstance(e, MessageWritten)]
    plan = plan_messages(ids, written, _stored_messages(conn, message_keys(ids, written)), now)
    if plan.inserts:
        conn.execute(messages.insert(), plan.inserts)
        conn.execute(
            update(chats)
            .where(chats.c.id == bindparam("chat"))
            .values(messages_count=chats.c.messages_count + bindparam("added")),
            plan.counts,
        )
    if plan.updates:
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
            plan.updates,
        )
    if plan.late:
        conn.execute(
            update(messages)
            .where(messages.c.chat_id == bindparam("chat"), messages.c.number == bindparam("num"))
            .values(
                created_revision=bindparam("owner"),
                created_at=bindparam("at"),
                author=bindparam("by"),
            ),
            plan.late,
        )
    set_aside += plan.set_aside
    chat_keys = {chat_id: key for key, chat_id in ids.items()}
    _keep_reading(
        conn,
        plan_activity(plan.inserts, chat_keys),
        marks_of(marking, plan.inserts, chat_keys),
        locking,
    )

    _keep_claims(conn, claim_rows(accepted, (e for e, _ in set_aside), now), now, purge)
    if set_aside:
        conn.execute(
            update(numbering)
            .where(numbering.c.id == 1)
            .values(set_aside=numbering.c.set_aside + len(set_aside))
        )
    return Applied(
        plan.indexed,
        set_aside,
        created=plan.created,
        updated=plan.updated,
        chats=chat_plan.inserted(ids),
    )


def _keep_reading(
    conn: Connection, activity: Params, marks: dict[MemberKey, list[ReadMarked]], locking: bool
) -> None:
    """Members' rows follow their chats' new messages, then take the batch's read marks."""
    if activity:
        conn.execute(
            update(chat_members)
            .where(
                chat_members.c.application_id == bindparam("app"),
                chat_members.c.chat_number == bindparam("chat"),
            )
            .values(
                active_at=case(
                    (chat_members.c.active_at < bindparam("active"), bindparam("active")),
                    else_=chat_members.c.active_at,
                ),
                top_number=case(
                    (chat_members.c.top_number < bindparam("top"), bindparam("top")),
                    else_=chat_members.c.top_number,
                ),
            ),
            activity,
        )
    if not marks:
        return
    query = select(
        chat_members.c.id,
        chat_members.c.application_id,
        chat_members.c.chat_number,
        chat_members.c.user_id,
        chat_members.c.last_read_number,
        chat_members.c.unread_at,
        chat_members.c.top_number,
    ).where(
        tuple_(
            chat_members.c.application_id, chat_members.c.chat_number, chat_members.c.user_id
        ).in_(sorted(marks))
    )
    if locking:
        query = query.with_for_update()
    rows = {
        (r.application_id, r.chat_number, r.user_id): MemberRow(*r) for r in conn.execute(query)
    }
    moved = plan_marks(marks, rows)
    if moved:
        conn.execute(
            update(chat_members)
            .where(chat_members.c.id == bindparam("member"))
            .values(
                last_read_number=bindparam("marker"),
                unread_at=bindparam("unread_since"),
                read_at=bindparam("moved"),
            ),
            moved,
        )


def _chat_ids(conn: Connection, keys: set[Key]) -> dict[Key, int]:
    if not keys:
        return {}
    query = select(chats.c.id, chats.c.application_id, chats.c.number).where(
        tuple_(chats.c.application_id, chats.c.number).in_(sorted(keys))
    )
    return {(r.application_id, r.number): r.id for r in conn.execute(query)}


def _stored_messages(conn: Connection, keys: list[Key]) -> dict[Key, StoredMessage]:
    if not keys:
        return {}
    query = select(
        messages.c.chat_id,
        messages.c.number,
        messages.c.revision,
        messages.c.body,
        messages.c.created_revision,
        messages.c.created_at,
        messages.c.updated_at,
        messages.c.author,
    ).where(tuple_(messages.c.chat_id, messages.c.number).in_(keys))
    return {(r.chat_id, r.number): StoredMessage(*r) for r in conn.execute(query)}


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


def _keep_claims(conn: Connection, rows: list[dict[str, object]], now: int, purge: Purge) -> None:
    """Store the claims of a batch's creates sent with idempotency keys (a claim stored
    already, by a replay or a retry's resubmission, stays as it is); now and then, forget
    the expired ones."""
    if not rows:
        return
    statement = (
        idempotency_keys.insert()
        .prefix_with("OR IGNORE", dialect="sqlite")
        .prefix_with("IGNORE", dialect="mysql")
        .prefix_with("IGNORE", dialect="mariadb")
    )
    conn.execute(statement, rows)
    if purge.due():
        conn.execute(idempotency_keys.delete().where(idempotency_keys.c.expires <= now))
