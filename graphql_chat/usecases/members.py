"""Chat membership: who may reach a chat with a user token. The application's backend adds
and removes anyone; a user adds others to their chats (unless the application lets only its
backend) and may leave. A chat a user is not a member of answers as an unknown one.

The store is the authority; each process remembers a membership it has seen for
ACCESS_RECHECK_MS at most (never a non-membership), so a member added can act at once on
every process and one removed loses access within that time, with nothing to deliver
between processes (a Redis data loss or a stalled worker changes none of it)."""

from __future__ import annotations

from collections.abc import Sequence

from graphql_chat.config import Settings
from graphql_chat.domain import Chat, User, clean_user_id, now_micros, parse_number
from graphql_chat.errors import Forbidden, InvalidInput, NotFound
from graphql_chat.paging import Page, PageRequest, make_page
from graphql_chat.ports import ChatRecords, Membership, UserRecords
from graphql_chat.usecases.acceptance import Acceptance
from graphql_chat.usecases.caches import ExpiringCache
from graphql_chat.usecases.directory import Directory

_CACHE_SIZE = 100_000
MAX_USERS_AT_ONCE = 100


def _membership_key(membership: Membership) -> int:
    return membership.id


class Members:
    def __init__(
        self,
        settings: Settings,
        records: UserRecords,
        chats: ChatRecords,
        directory: Directory,
        acceptance: Acceptance,
    ) -> None:
        self._settings = settings
        self._records = records
        self._chats = chats
        self._directory = directory
        self._acceptance = acceptance
        self._known: ExpiringCache[tuple[int, str, int], bool] = ExpiringCache(
            _CACHE_SIZE, settings.access_recheck_ms / 1000
        )

    # -- access --------------------------------------------------------------------------------

    async def require(self, user: User, chat_number: object) -> int:
        """The chat's number, if the user is a member; else `NotFound`, as for a chat that
        does not exist."""
        number = parse_number(chat_number, "chat number")
        if not await self.is_member(user, number):
            raise NotFound(f"chat {number} not found")
        return number

    async def is_member(self, user: User, number: int) -> bool:
        return number in await self.member_of(user, [number])

    async def member_of(self, user: User, numbers: Sequence[int]) -> set[int]:
        """Which of these chats the user is a member of (one read for those not seen lately)."""
        known = {n for n in numbers if self._known.get((user.application_id, user.id, n))}
        unknown = [n for n in dict.fromkeys(numbers) if n not in known]
        if unknown:
            found = await self._records.member_of(user.application_id, user.id, unknown)
            for number in found:
                self._known.put((user.application_id, user.id, number), True)
            known |= found
        return known

    # -- changes -------------------------------------------------------------------------------

    async def add(
        self,
        token: str,
        chat_number: object,
        user_ids: object,
        by: User | None = None,
        field: str = "userIds",
    ) -> list[str]:
        """Add users to a chat (those already in it stay as they are): returns those added
        now. `by`: the user asking, else the application's backend; `field`: what the
        interface calls the list, for its errors."""
        number = parse_number(chat_number, "chat number")
        users = _user_ids(user_ids, field)
        if by is not None:
            if not by.manage_chats:
                raise Forbidden("this application lets only its backend add members to chats")
            await self.require(by, number)  # a member's chat exists, stored or still queued
            app_id = by.application_id
        else:
            app_id = await self._existing_chat(token, number)
        return await self._records.add_members(app_id, number, users, now_micros())

    async def remove(
        self,
        token: str,
        chat_number: object,
        user_ids: object,
        by: User | None = None,
        field: str = "userIds",
    ) -> list[str]:
        """Remove users from a chat: returns those who were members. A user may remove only
        themselves (leave the chat)."""
        number = parse_number(chat_number, "chat number")
        users = _user_ids(user_ids, field)
        if by is not None:
            await self.require(by, number)
            if any(user != by.id for user in users):
                raise Forbidden("a user may remove only themselves from a chat")
            app_id = by.application_id
        else:
            app_id = await self._existing_chat(token, number)
        removed = await self._records.remove_members(app_id, number, users)
        for user in removed:
            self._known.forget((app_id, user, number))
        return removed

    async def join_created(
        self, application_id: int, number: int, creator: User | None, others: Sequence[str]
    ) -> None:
        """The members of a chat just drawn, before it is acknowledged (so before any
        worker stores it): the user who created it, if a user did, and those it named."""
        users = ([creator.id] if creator is not None else []) + list(others)
        if users:
            await self._records.add_members(application_id, number, users, now_micros())
        if creator is not None:
            self._known.put((application_id, creator.id, number), True)

    def user_ids(self, value: object, field: str) -> list[str]:
        """Up to 100 user ids, checked (InvalidInput naming `field` otherwise)."""
        return _user_ids(value, field)

    async def _existing_chat(self, token: str, number: int) -> int:
        app_id = await self._directory.application_id(token)

        async def read() -> Chat:
            return await self._directory.require_chat(token, number)

        await self._acceptance.stored(read)  # a chat just created is waited for a little
        return app_id

    # -- lists ---------------------------------------------------------------------------------

    async def page(
        self, application_id: int, chat_number: int, request: PageRequest
    ) -> Page[Membership]:
        """A chat's members in the order they joined."""
        rows = await self._records.list_members(
            application_id, chat_number, request.key, request.size + 1, request.backward
        )
        return make_page("member", rows, request, _membership_key)

    async def chats(self, user: User, request: PageRequest) -> Page[Chat]:
        """The chats a user is a member of, in the order they joined them (a chat whose
        create is still on its way to the store is left out until it is stored)."""
        rows = await self._records.list_memberships(
            user.application_id, user.id, request.key, request.size + 1, request.backward
        )
        joined = make_page("member", rows, request, _membership_key)
        keys = [(user.application_id, m.chat_number) for m in joined.items]
        found = await self._chats.chats_by_number(keys)
        items, cursors = [], []
        for membership, key in zip(joined.items, joined.keys, strict=True):
            chat = found.get((user.application_id, membership.chat_number))
            if chat is not None:
                items.append(chat)
                cursors.append(key)
        return Page(items, cursors, joined.has_next, joined.has_previous, "member")


def _user_ids(value: object, field: str = "userIds") -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"{field} must be a list of 1 or more user ids", field)
    if len(value) > MAX_USERS_AT_ONCE:
        raise InvalidInput(f"at most {MAX_USERS_AT_ONCE} user ids at once", field)
    return list(dict.fromkeys(clean_user_id(user, field) for user in value))
