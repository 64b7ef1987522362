"""The batch write as a plan: what a batch of accepted events does to the rows it touches,
worked out from the events and those rows as they stand, with no database.

`sql_batch.py` reads the rows a step needs, asks this module for the step's plan and runs its
statements, in one transaction. A plan gives, per statement, the rows of parameters to run it
with (the statements themselves are `sql_batch`'s), and what the batch reports (`Applied`).
The rules live here, where a unit test can reach every case:

- A draw of a numbering epoch that was retired is set aside (`screen`).
- A chat is created at its create's time, else at its first message's: a message may reach
  the writer before its chat's create, never be accepted before it (`plan_chats`).
- A message is upserted by revision: the highest revision's body wins, whatever the order
  of arrival; a create whose number holds another draw's create is set aside instead of
  overwriting it; `created_at` is the create's time (an update's, until a late create sets
  it), `updated_at` the time of the write whose body it holds (`plan_messages`).
- Counts grow by the rows inserted, never by a replay.
- Each member's row of a chat follows the chat's newest stored message (its time orders the
  user's chats, its number bounds read markers) (`plan_activity`); a read marker moves forward
  only, except when moved back on request, and a mark accepted before a move back changes
  nothing, whatever order they arrive in; a message's author has read up to it
  (`plan_marks`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from graphql_chat.domain import ChatCreated, Event, MessageWritten, ReadMarked, instant, micros
from graphql_chat.ports import IndexedMessage, StoredChat

Key = tuple[int, int]  # a chat's (application id, number), or a message's (chat id, number)
MemberKey = tuple[int, int, str]  # a member's (application id, chat number, user id)
Params = list[dict[str, Any]]  # the parameters of one statement, a row each


def screen(
    events: Iterable[Event], epoch: int, epochs: Mapping[int, int]
) -> tuple[list[Event], list[tuple[Event, str]]]:
    """The events to apply, and those set aside: drawn in an epoch older than the one that
    is current (`epoch`, or their application's own, `epochs`). An event with no epoch (the
    embedded mode's) is always applied."""
    accepted: list[Event] = []
    set_aside: list[tuple[Event, str]] = []
    for e in events:
        retired = max(epoch, epochs.get(e.application_id, 0))
        if 0 < e.epoch < retired:
            set_aside.append((e, f"drawn in numbering epoch {e.epoch}, retired (now {retired})"))
        else:
            accepted.append(e)
    return accepted, set_aside


def chat_times(accepted: Iterable[Event], now: int) -> dict[Key, int]:
    """When each chat the batch names was created, as far as the batch knows: the earliest of
    its events' times (an event without a time was accepted `now`)."""
    times: dict[Key, int] = {}
    for e in accepted:
        key, at = (e.application_id, e.chat_number), e.at or now
        times[key] = min(times.get(key, at), at)
    return times


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """`late`: chats a message inserted before their create arrived, given the create's
    time (only if earlier); `inserts`: the chats not stored yet (`missing`, in key order);
    `counts`: each application's chats count, grown by its inserts; `times`: when each chat
    the batch names was created, as far as it knows."""

    late: Params
    inserts: Params
    counts: Params
    missing: list[Key]
    times: dict[Key, int]

    def inserted(self, ids: Mapping[Key, int]) -> list[StoredChat]:
        """The chats the batch inserted (`ids`: theirs once inserted), as subscribers are
        told of them."""
        return [StoredChat(a, n, ids[(a, n)], instant(self.times[(a, n)])) for a, n in self.missing]


def plan_chats(accepted: Sequence[Event], ids: Mapping[Key, int], now: int) -> ChatPlan:
    """What the batch does to chats, given the ids of those stored (`ids`, by key)."""
    times = chat_times(accepted, now)
    created = {(e.application_id, e.chat_number): e.at or now for e in accepted if _chat(e)}
    missing = sorted(times.keys() - ids.keys())
    late = [
        {"chat": ids[key], "at": instant(created[key])} for key in sorted(created) if key in ids
    ]
    inserts = [
        {
            "application_id": a,
            "number": n,
            "messages_count": 0,
            "created_at": instant(times[(a, n)]),
        }
        for a, n in missing
    ]
    per_app = Counter(app_id for app_id, _ in missing)
    counts = [{"app_id": a, "added": n} for a, n in sorted(per_app.items())]
    return ChatPlan(late, inserts, counts, missing, times)


def _chat(event: Event) -> bool:
    return isinstance(event, ChatCreated)


class StoredMessage(NamedTuple):
    """A message row as the batch reads it before writing."""

    chat_id: int
    number: int
    revision: int
    body: str
    created_revision: int | None
    created_at: datetime
    updated_at: datetime
    author: str | None = None


def message_keys(chat_ids: Mapping[Key, int], written: Iterable[MessageWritten]) -> list[Key]:
    """The (chat id, number) of every message the events write, in order: the rows to read."""
    return sorted({(chat_ids[(e.application_id, e.chat_number)], e.number) for e in written})


@dataclass(frozen=True, slots=True)
class MessagePlan:
    """`inserts`: new message rows; `counts`: each chat's messages count, grown by its
    inserts; `updates`: newer bodies for stored rows; `late`: creates that arrived after an
    update inserted the row (the create's revision and time); `set_aside`: creates refused
    (their number holds another draw's). `indexed`: every message the batch names, as it
    will stand (a replay indexes again); `created` and `updated`: what this batch changed."""

    inserts: Params
    counts: Params
    updates: Params
    late: Params
    set_aside: list[tuple[Event, str]]
    indexed: list[IndexedMessage]
    created: list[IndexedMessage]
    updated: list[IndexedMessage]


def plan_messages(
    chat_ids: Mapping[Key, int],
    written: Sequence[MessageWritten],
    stored: Mapping[Key, StoredMessage],
    now: int,
) -> MessagePlan:
    """What the batch's message writes do, given the rows stored for the messages they name
    (`stored`, by chat id and number)."""
    keyed: dict[Key, list[MessageWritten]] = {}
    for e in written:
        keyed.setdefault((chat_ids[(e.application_id, e.chat_number)], e.number), []).append(e)
    set_aside: list[tuple[Event, str]] = []
    wanted: dict[Key, MessageWritten] = {}  # the write whose body each message will hold
    creators: dict[Key, tuple[int, int]] = {}  # the draw that owns each number, and its time
    authors: dict[Key, str | None] = {}  # as its create says (an update does not say)
    for key, found in keyed.items():
        row = stored.get(key)
        owner = row.created_revision if row is not None else None
        for e in sorted(found, key=lambda e: e.revision):
            if e.created:
                if owner is None:
                    owner = e.revision
                    creators[key] = (e.revision, e.at or now)
                    authors[key] = e.author
                elif owner != e.revision:
                    set_aside.append((e, f"message {e.number} already holds another draw's create"))
                    continue
            if key not in wanted or wanted[key].revision < e.revision:
                wanted[key] = e
    new = [key for key in sorted(wanted) if key not in stored]
    newer = [
        key
        for key in sorted(wanted)
        if key in stored and stored[key].revision < wanted[key].revision
    ]
    # Each message's times once the batch is done.
    times = {key: (row.created_at, row.updated_at) for key, row in stored.items()}
    for key in new:
        at = instant(wanted[key].at or now)
        times[key] = (instant(creators[key][1]) if key in creators else at, at)
    for key in newer:
        times[key] = (times[key][0], instant(wanted[key].at or now))
    late = sorted(key for key in creators if key in stored)  # creates after an update's insert
    for key in late:
        times[key] = (instant(creators[key][1]), times[key][1])
    changed = {*new, *newer}

    def author(key: Key) -> str | None:
        if key in authors:
            return authors[key]
        row = stored.get(key)
        return row.author if row is not None else None

    def standing(key: Key) -> IndexedMessage:
        source = wanted[key] if key in changed else stored[key]
        return IndexedMessage(
            key[0], key[1], source.body, source.revision, *times[key], author(key)
        )

    return MessagePlan(
        inserts=[
            {
                "chat_id": c,
                "number": n,
                "body": wanted[(c, n)].body,
                "revision": wanted[(c, n)].revision,
                "created_revision": creators[(c, n)][0] if (c, n) in creators else None,
                "created_at": times[(c, n)][0],
                "updated_at": times[(c, n)][1],
                "author": authors.get((c, n)),
            }
            for c, n in new
        ],
        counts=[
            {"chat": c, "added": n}
            for c, n in sorted(Counter(chat_id for chat_id, _ in new).items())
        ],
        updates=[
            {
                "chat": c,
                "num": n,
                "new_body": wanted[(c, n)].body,
                "rev": wanted[(c, n)].revision,
                "at": times[(c, n)][1],
            }
            for c, n in newer
        ],
        late=[
            {
                "chat": c,
                "num": n,
                "owner": creators[(c, n)][0],
                "at": times[(c, n)][0],
                "by": authors[(c, n)],
            }
            for c, n in late
        ],
        set_aside=set_aside,
        indexed=[standing(key) for key in sorted(wanted)],
        created=[standing(key) for key in new],
        updated=[standing(key) for key in newer],
    )


def claim_rows(events: Iterable[Event], refused: Iterable[Event], now: int) -> Params:
    """The idempotency claims to store: those of the creates sent with a key and not refused
    (a claim stored already stays as it is: the statement ignores it)."""
    skip = {id(e) for e in refused}
    rows: Params = []
    for e in events:
        if e.claim is None or id(e) in skip:
            continue
        at = e.at or now
        if isinstance(e, MessageWritten):
            chat_number, number, revision = e.chat_number, e.number, e.revision
        else:  # a chat's claim names the chat's number
            chat_number, number, revision = 0, e.chat_number, 0
        rows.append(
            {
                "application_id": e.application_id,
                "key": e.claim.key,
                "fingerprint": e.claim.fingerprint,
                "chat_number": chat_number,
                "number": number,
                "revision": revision,
                "epoch": e.epoch,
                "at": at,
                "expires": at + e.claim.window * 1_000_000,
            }
        )
    return rows


def plan_activity(inserts: Params, chat_keys: Mapping[int, Key]) -> Params:
    """For each chat the batch inserted messages in (`inserts`: the message rows; `chat_keys`:
    chats' keys by id), its newest message's time and its highest number, to raise its
    members' `active_at` and `top_number` to."""
    newest: dict[int, tuple[datetime, int]] = {}
    for row in inserts:
        at, top = newest.get(row["chat_id"], (row["created_at"], row["number"]))
        newest[row["chat_id"]] = (max(at, row["created_at"]), max(top, row["number"]))
    return [
        {
            "app": chat_keys[chat_id][0],
            "chat": chat_keys[chat_id][1],
            "active": micros(at),
            "top": top,
        }
        for chat_id, (at, top) in sorted(newest.items(), key=lambda item: chat_keys[item[0]])
    ]


def marks_of(
    accepted: Iterable[Event], inserts: Params, chat_keys: Mapping[int, Key]
) -> dict[MemberKey, list[ReadMarked]]:
    """The batch's read marks by member: those sent, and one for each inserted message's
    author, at their message."""
    found: dict[MemberKey, list[ReadMarked]] = {}
    for e in accepted:
        if isinstance(e, ReadMarked):
            found.setdefault((e.application_id, e.chat_number, e.user), []).append(e)
    for row in inserts:
        if row["author"] is not None:
            app_id, chat_number = chat_keys[row["chat_id"]]
            mark = ReadMarked(
                app_id, chat_number, row["author"], row["number"], micros(row["created_at"])
            )
            found.setdefault((app_id, chat_number, row["author"]), []).append(mark)
    return found


class MemberRow(NamedTuple):
    """A member's reading state as the batch reads it before writing."""

    id: int
    application_id: int
    chat_number: int
    user_id: str
    last_read_number: int
    unread_at: int
    top_number: int


def plan_marks(
    marks: Mapping[MemberKey, Sequence[ReadMarked]], rows: Mapping[MemberKey, MemberRow]
) -> Params:
    """The markers the batch's marks leave, one write per member however many marks: each
    mark in the order it was accepted, bounded by the chat's highest stored number; a mark
    accepted at or before the stored move back is ignored (a mark of someone no longer a
    member, too)."""
    params: Params = []
    for key in sorted(marks):
        row = rows.get(key)
        if row is None:
            continue
        marker, unread_at, moved = row.last_read_number, row.unread_at, 0
        for mark in sorted(marks[key], key=lambda m: m.at):
            if mark.at <= unread_at:
                continue
            number = max(min(mark.number, row.top_number), 0)
            if mark.back:
                marker, unread_at, moved = number, mark.at, mark.at
            elif number > marker:
                marker, moved = number, mark.at
        if moved:
            params.append(
                {"member": row.id, "marker": marker, "unread_since": unread_at, "moved": moved}
            )
    return params
