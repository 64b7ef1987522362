"""The batch write's rules, as a plan from events and rows, without a database (the
contract suite runs the same rules through both engines)."""

from __future__ import annotations

from graphql_chat.adapters.batch_plan import (
    MemberRow,
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
from graphql_chat.domain import ChatCreated, Claim, Event, MessageWritten, ReadMarked, instant

APP, OTHER = 7, 8
T = 1_764_470_471_000_000  # a time, in microseconds
NOW = T + 60_000_000


def _message(
    number: int,
    body: str,
    revision: int,
    at: int,
    created: bool = False,
    author: str | None = None,
) -> MessageWritten:
    return MessageWritten(APP, 1, number, body, revision, created=created, at=at, author=author)


def test_draws_of_a_retired_epoch_are_set_aside_and_writes_without_an_epoch_never_are() -> None:
    old = ChatCreated(APP, 1, epoch=2)
    current = ChatCreated(APP, 2, epoch=3)
    embedded = ChatCreated(APP, 3)
    own = ChatCreated(OTHER, 1, epoch=3)  # its application's own epoch is 4 (Redis Cluster)
    accepted, set_aside = screen([old, current, embedded, own], 3, {OTHER: 4})
    assert accepted == [current, embedded]
    assert [(e, reason) for e, reason in set_aside] == [
        (old, "drawn in numbering epoch 2, retired (now 3)"),
        (own, "drawn in numbering epoch 3, retired (now 4)"),
    ]


def test_a_chat_is_created_at_its_earliest_event_and_a_late_create_only_moves_it_earlier() -> None:
    events: list[Event] = [
        _message(1, "first", 1, T + 5, created=True),  # reached the writer before its chat
        ChatCreated(APP, 1, at=T + 2),
        ChatCreated(APP, 2, at=T + 9),  # stored already: its time can only move earlier
        ChatCreated(OTHER, 1),  # no time: accepted now
    ]
    plan = plan_chats(events, {(APP, 2): 20}, NOW)
    assert plan.missing == [(APP, 1), (OTHER, 1)]
    assert plan.inserts == [
        {"application_id": APP, "number": 1, "messages_count": 0, "created_at": instant(T + 2)},
        {"application_id": OTHER, "number": 1, "messages_count": 0, "created_at": instant(NOW)},
    ]
    assert plan.late == [{"chat": 20, "at": instant(T + 9)}]
    assert plan.counts == [{"app_id": APP, "added": 1}, {"app_id": OTHER, "added": 1}]
    inserted = plan.inserted({(APP, 1): 21, (APP, 2): 20, (OTHER, 1): 22})
    assert [(c.chat_id, c.created_at) for c in inserted] == [
        (21, instant(T + 2)),
        (22, instant(NOW)),
    ]


def test_the_highest_revision_wins_whatever_the_order_and_counts_grow_by_inserts_only() -> None:
    chats = {(APP, 1): 10}
    written = [
        _message(2, "edited", 5, T + 50),
        _message(1, "one", 1, T + 10, created=True),
        _message(2, "two", 2, T + 20, created=True),
    ]
    assert message_keys(chats, written) == [(10, 1), (10, 2)]
    plan = plan_messages(chats, written, {}, NOW)
    assert [(row["number"], row["body"], row["revision"]) for row in plan.inserts] == [
        (1, "one", 1),
        (2, "edited", 5),
    ]
    two = plan.inserts[1]
    assert (two["created_revision"], two["created_at"], two["updated_at"]) == (
        2,
        instant(T + 20),
        instant(T + 50),
    )
    assert plan.counts == [{"chat": 10, "added": 2}]
    assert plan.updates == plan.late == [] and plan.set_aside == []
    assert [(m.number, m.body) for m in plan.created] == [(1, "one"), (2, "edited")]
    assert plan.indexed == plan.created and plan.updated == []


def test_a_replay_changes_nothing_and_still_names_its_messages_for_search() -> None:
    stored = {(10, 1): StoredMessage(10, 1, 3, "kept", 1, instant(T), instant(T + 30))}
    plan = plan_messages({(APP, 1): 10}, [_message(1, "older", 2, T + 20)], stored, NOW)
    assert plan.inserts == plan.updates == plan.late == plan.counts == []
    assert plan.created == plan.updated == []
    assert [(m.body, m.revision, m.updated_at) for m in plan.indexed] == [
        ("kept", 3, instant(T + 30))
    ]


def test_a_newer_body_updates_the_row_and_keeps_its_creation_time() -> None:
    stored = {(10, 1): StoredMessage(10, 1, 1, "one", 1, instant(T), instant(T))}
    plan = plan_messages({(APP, 1): 10}, [_message(1, "new", 4, T + 40)], stored, NOW)
    assert plan.updates == [
        {"chat": 10, "num": 1, "new_body": "new", "rev": 4, "at": instant(T + 40)}
    ]
    assert plan.inserts == plan.counts == []
    [updated] = plan.updated
    assert (updated.created_at, updated.updated_at) == (instant(T), instant(T + 40))


def test_a_create_after_its_update_was_stored_sets_the_owner_and_creation_time() -> None:
    stored = {(10, 1): StoredMessage(10, 1, 4, "new", None, instant(T + 40), instant(T + 40))}
    plan = plan_messages({(APP, 1): 10}, [_message(1, "one", 1, T + 10, created=True)], stored, NOW)
    assert plan.late == [{"chat": 10, "num": 1, "owner": 1, "at": instant(T + 10), "by": None}]
    assert plan.inserts == plan.updates == []
    [standing] = plan.indexed
    assert (standing.body, standing.created_at, standing.updated_at) == (
        "new",
        instant(T + 10),
        instant(T + 40),
    )


def test_a_create_for_a_number_another_draw_created_is_set_aside_not_written() -> None:
    stored = {(10, 1): StoredMessage(10, 1, 1, "mine", 1, instant(T), instant(T))}
    theirs = _message(1, "theirs", 9, T + 90, created=True)
    plan = plan_messages({(APP, 1): 10}, [theirs], stored, NOW)
    assert plan.set_aside == [(theirs, "message 1 already holds another draw's create")]
    assert plan.inserts == plan.updates == plan.late == []
    assert plan.indexed == []  # nothing the batch wrote stands


def test_claims_are_kept_for_creates_with_a_key_that_were_not_refused() -> None:
    claim = Claim("k" * 32, "f" * 32, 60)
    chat = ChatCreated(APP, 4, epoch=3, at=T, claim=claim)
    message = MessageWritten(APP, 4, 2, "x", 7, epoch=3, created=True, at=T, claim=claim)
    refused = MessageWritten(APP, 4, 3, "y", 8, created=True, claim=claim)
    plain = MessageWritten(APP, 4, 5, "z", 9, created=True)
    rows = claim_rows([chat, message, refused, plain], [refused], NOW)
    assert [(r["chat_number"], r["number"], r["revision"]) for r in rows] == [(0, 4, 0), (4, 2, 7)]
    assert rows[0]["expires"] == T + 60_000_000 and rows[0]["epoch"] == 3


def test_a_message_s_author_is_its_create_s_in_whichever_order_the_writes_arrive() -> None:
    create = _message(1, "one", 1, T + 10, created=True, author="ada")
    update = _message(1, "two", 4, T + 40)  # an update says no author
    for order in ([create, update], [update, create]):
        plan = plan_messages({(APP, 1): 10}, order, {}, NOW)
        assert [row["author"] for row in plan.inserts] == ["ada"]
        assert [m.author for m in plan.indexed] == ["ada"]
    # The update was stored first, without an author: the late create sets it.
    stored = {(10, 1): StoredMessage(10, 1, 4, "two", None, instant(T + 40), instant(T + 40))}
    plan = plan_messages({(APP, 1): 10}, [create], stored, NOW)
    assert [row["by"] for row in plan.late] == ["ada"]
    assert [m.author for m in plan.indexed] == ["ada"]
    # A replayed update of a stored message keeps the stored author.
    stored = {(10, 1): StoredMessage(10, 1, 1, "one", 1, instant(T + 10), instant(T + 10), "ada")}
    plan = plan_messages({(APP, 1): 10}, [update], stored, NOW)
    assert [m.author for m in plan.indexed] == ["ada"]


def _member(marker: int = 0, unread_at: int = 0, top: int = 10) -> MemberRow:
    return MemberRow(5, APP, 1, "ada", marker, unread_at, top)


def _mark(number: int, at: int, back: bool = False, user: str = "ada") -> ReadMarked:
    return ReadMarked(APP, 1, user, number, at, back)


def test_a_burst_of_marks_is_one_write_forward_only_and_never_past_the_newest_message() -> None:
    key = (APP, 1, "ada")
    rows = {key: _member(marker=3)}
    burst = [_mark(5, T + 1), _mark(4, T + 2), _mark(2, T + 3), _mark(7, T + 4)]
    assert plan_marks({key: burst}, rows) == [
        {"member": 5, "marker": 7, "unread_since": 0, "moved": T + 4}
    ]
    assert plan_marks({key: [_mark(2, T + 1)]}, rows) == []  # behind the marker
    assert plan_marks({key: [_mark(99, T + 1)]}, rows)[0]["marker"] == 10  # the newest is 10
    assert plan_marks({(APP, 1, "eve"): [_mark(5, T)]}, rows) == []  # not a member


def test_a_mark_accepted_before_a_move_back_changes_nothing_whatever_the_order() -> None:
    key = (APP, 1, "ada")
    back, before, after = _mark(2, T + 5, back=True), _mark(9, T + 4), _mark(3, T + 6)
    # Together in one batch, in any order: back to 2, then forward to 3.
    for order in ([before, back, after], [after, back, before], [back, after, before]):
        assert plan_marks({key: order}, {key: _member(marker=6)}) == [
            {"member": 5, "marker": 3, "unread_since": T + 5, "moved": T + 6}
        ]
    # The move back stored first, the earlier mark arriving after it: ignored.
    stored = {key: _member(marker=2, unread_at=T + 5)}
    assert plan_marks({key: [before]}, stored) == []
    assert plan_marks({key: [after]}, stored)[0]["marker"] == 3


def test_members_rows_follow_the_newest_message_and_authors_read_their_own() -> None:
    ids = {(APP, 1): 11, (APP, 2): 12}
    written = [
        _message(1, "a", 1, T, created=True, author="bob"),
        _message(2, "b", 2, T + 9, created=True),
        MessageWritten(APP, 2, 1, "c", 3, created=True, at=T + 5, author="ada"),
    ]
    plan = plan_messages(ids, written, {}, NOW)
    keys = {chat_id: key for key, chat_id in ids.items()}
    assert plan_activity(plan.inserts, keys) == [
        {"app": APP, "chat": 1, "active": T + 9, "top": 2},
        {"app": APP, "chat": 2, "active": T + 5, "top": 1},
    ]
    marks = marks_of([_mark(1, T + 7)], plan.inserts, keys)
    assert marks == {
        (APP, 1, "ada"): [_mark(1, T + 7)],
        (APP, 1, "bob"): [ReadMarked(APP, 1, "bob", 1, T)],
        (APP, 2, "ada"): [ReadMarked(APP, 2, "ada", 1, T + 5)],
    }
