"""Applications: made with a fresh token, renamed, listed (an admin operation), found by id."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from graphql_chat.config import Settings
from graphql_chat.domain import Application, clean_name, clean_token, new_token
from graphql_chat.errors import InvalidInput, NotFound, TokenClash, Unavailable
from graphql_chat.paging import Page, PageRequest, make_page
from graphql_chat.ports import ApplicationRecords, Numbers
from graphql_chat.usecases.directory import Directory
from graphql_chat.usecases.users import Users

_TOKEN_TRIES = 5


class Applications:
    def __init__(
        self,
        settings: Settings,
        store: ApplicationRecords,
        numbers: Numbers,
        directory: Directory,
        users: Users,
    ) -> None:
        self._settings = settings
        self._store = store
        self._numbers = numbers
        self._directory = directory
        self._users = users

    async def create(self, name: object) -> Application:
        name = clean_name(name, self._settings.max_name_length)
        for _ in range(_TOKEN_TRIES):
            try:
                application = await self._store.insert_application(new_token(), name)
            except TokenClash:
                continue
            self._directory.remember(application)
            # Without it (Redis down), its first chat is numbered from the store instead.
            with suppress(Unavailable):
                await self._numbers.register_application(application.id, application.token)
            return application
        raise Unavailable("could not allocate a unique token; retry")

    async def update(
        self, token: str, name: object, users_manage_chats: object = None
    ) -> Application:
        """Rename an application, or set whether its users may create chats and add
        members (`users_manage_chats`); either may be left out (None), not both."""
        if name is None and users_manage_chats is None:
            raise InvalidInput("name is required", "name")
        if users_manage_chats is not None and not isinstance(users_manage_chats, bool):
            raise InvalidInput("usersManageChats must be true or false", "usersManageChats")
        if name is not None:
            name = clean_name(name, self._settings.max_name_length)
        if clean_token(token) is None:
            raise NotFound("application not found")
        if users_manage_chats is not None:
            await self._users.let_users_manage_chats(token, users_manage_chats)
        if name is None:
            return await self._directory.require_application(token)
        application = await self._store.rename_application(token, name)
        if application is None:
            raise NotFound("application not found")
        return application

    async def page(self, request: PageRequest) -> Page[Application]:
        """Every application (an admin operation: see `Admin`), oldest first."""
        rows = await self._store.list_applications(request.key, request.size + 1, request.backward)
        return make_page("application", rows, request, lambda a: a.id)

    async def by_ids(self, ids: Sequence[int]) -> dict[int, Application]:
        return await self._store.applications_by_id(ids)
