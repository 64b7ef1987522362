"""What users have read: read markers, unread counts, and a user's chats by latest activity
(the inbox).

A mark is a write like a message's: queued in the distributed mode and stored by the batch
that stores messages, which keeps one marker per member however many marks a burst sends
(see `adapters/batch_plan.py`). A marker moves forward only, unless moved back on request
(mark unread), and never past the chat's newest stored message; a member's own message is
read by them. Counts are of stored rows: exact once the writes they follow are stored."""

from __future__ import annotations

from collections.abc import Sequence

from graphql_chat.domain import Chat, Message, ReadMarked, User, now_micros, parse_number
from graphql_chat.paging import Page, PageRequest, make_page
from graphql_chat.ports import ChatRecords, Membership, ReadingRecords
from graphql_chat.usecases.acceptance import Acceptance
from graphql_chat.usecases.members import Members

# The unread messages counted across all of a user's chats at most (each chat's own count
# is exact): a badge shows "999+" beyond, and the count stays one bounded read.
UNREAD_TOTAL_CAP = 999


def _inbox_key(row: tuple[Membership, Chat | None]) -> int:
    return row[0].inbox_key


class Reading:
    def __init__(
        self,
        records: ReadingRecords,
        chats: ChatRecords,
        members: Members,
        acceptance: Acceptance,
    ) -> None:
        self._records = records
        self._chats = chats
        self._members = members
        self._acceptance = acceptance

    async def mark(self, user: User, chat_number: object, number: object, back: bool) -> int:
        """Move the user's read marker: forward to message `number` (read up to it), or with
        `back`, to just below it (it and those after it unread). Returns the marker asked
        for; it is stored once the write is (a lower one than stored changes nothing)."""
        chat = await self._members.require(user, chat_number)
        message = parse_number(number, "number")
        marker = message - 1 if back else message
        event = ReadMarked(user.application_id, chat, user.id, marker, now_micros(), back)
        await self._acceptance.pipeline.submit(event)
        return marker

    async def memberships(self, user: User, chat_numbers: Sequence[int]) -> dict[int, Membership]:
        """The user's reading state in each of these chats they are in."""
        return await self._records.memberships(user.application_id, user.id, chat_numbers)

    async def unread(self, user: User, markers: dict[int, int]) -> dict[int, int]:
        """By chat id (`markers`: the user's marker in each, by chat id): the stored messages
        others wrote above it (the caller knows the user is a member of each)."""
        return await self._records.unread_counts(user.id, markers)

    async def totals(self, user: User) -> tuple[int, int]:
        """How many of the user's chats hold unread messages, and how many those are (up to
        `UNREAD_TOTAL_CAP`)."""
        return await self._records.unread_totals(user.application_id, user.id, UNREAD_TOTAL_CAP)

    async def inbox(self, user: User, request: PageRequest) -> Page[tuple[Chat | None, Membership]]:
        """The user's chats, latest activity first: the newest stored message's time, or when
        they joined if later; each with the chat as stored, or None for one whose create is
        still on its way to the store (the membership proves it was made). A chat that moves
        up while pages are read goes above the cursor: it is not shown twice, and a first
        page read again shows it."""
        rows = await self._records.inbox(
            user.application_id, user.id, request.key, request.size + 1, request.backward
        )
        listed = make_page("inbox", rows, request, _inbox_key)
        items = [(chat, membership) for membership, chat in listed.items]
        return Page(items, listed.keys, listed.has_next, listed.has_previous, "inbox")

    async def last_messages(
        self, listed: Sequence[tuple[Chat | None, Membership]]
    ) -> dict[int, Message]:
        """The newest stored message of each chat of an inbox page, by chat number (one read:
        a member's row knows its chat's newest number)."""
        keys = {
            (chat.id, membership.top_number): chat.number
            for chat, membership in listed
            if chat is not None and membership.top_number
        }
        found = await self._chats.messages_by_number(list(keys))
        return {keys[key]: message for key, message in found.items()}
