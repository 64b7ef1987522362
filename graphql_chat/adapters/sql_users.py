"""Users as the SQL store keeps them (`UserRecords`): applications' signing secrets, chat
membership (keyed by chat number: a chat's first member is there before a worker stores the
chat) and revoked tokens. Written directly, in the request: these are the authority every
API process reads, rarer than messages, and must never lag or be lost."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, case, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from graphql_chat.adapters.sql_database import Database
from graphql_chat.ports import Membership, SigningKeys
from graphql_chat.tables import applications, chat_members, chats, messages, user_revocations

_KEYS = select(
    applications.c.id,
    applications.c.token,
    applications.c.public_id,
    applications.c.signing_secret,
    applications.c.previous_signing_secret,
    applications.c.previous_secret_until,
    applications.c.users_manage_chats,
)
MEMBER = (
    chat_members.c.id,
    chat_members.c.chat_number,
    chat_members.c.user_id,
    chat_members.c.joined_at,
    chat_members.c.last_read_number,
    chat_members.c.read_at,
    chat_members.c.active_at,
    chat_members.c.top_number,
)


def _keys(row: Any) -> SigningKeys | None:
    if row is None or not row.signing_secret:
        return None
    return SigningKeys(
        application_id=row.id,
        token=row.token,
        public_id=row.public_id,
        secret=row.signing_secret,
        previous=row.previous_signing_secret,
        previous_until=row.previous_secret_until,
        users_manage_chats=bool(row.users_manage_chats),
    )


def membership(row: Any) -> Membership:
    return Membership(*row)


class SqlUsers:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- signing secrets -----------------------------------------------------------------------

    async def signing_keys(self, public_id: str) -> SigningKeys | None:
        query = _KEYS.where(applications.c.public_id == public_id)
        return await self._db.read(lambda conn: _keys(conn.execute(query).first()))

    async def signing_keys_of(self, application_id: int) -> SigningKeys | None:
        query = _KEYS.where(applications.c.id == application_id)
        return await self._db.read(lambda conn: _keys(conn.execute(query).first()))

    async def rotate_secret(
        self, application_id: int, secret: str, previous_until: int
    ) -> SigningKeys | None:
        def rotate(conn: Connection) -> SigningKeys | None:
            # In this order: MySQL assigns left to right, each from the row as assigned so far.
            conn.execute(
                update(applications)
                .where(applications.c.id == application_id)
                .ordered_values(
                    (applications.c.previous_signing_secret, applications.c.signing_secret),
                    (applications.c.previous_secret_until, previous_until),
                    (applications.c.signing_secret, secret),
                )
            )
            return _keys(conn.execute(_KEYS.where(applications.c.id == application_id)).first())

        return await self._db.write(rotate)

    async def set_users_manage_chats(self, application_id: int, allowed: bool) -> None:
        statement = (
            update(applications)
            .where(applications.c.id == application_id)
            .values(users_manage_chats=allowed)
        )
        await self._db.write(lambda conn: conn.execute(statement))

    # -- revoked tokens ------------------------------------------------------------------------

    async def revoke(self, application_id: int, user_id: str, issued_before: int) -> int:
        row = (user_revocations.c.application_id == application_id) & (
            user_revocations.c.user_id == user_id
        )
        later = case(
            (user_revocations.c.issued_before < issued_before, issued_before),
            else_=user_revocations.c.issued_before,
        )

        def raise_it(conn: Connection) -> int:
            if conn.execute(
                update(user_revocations).where(row).values(issued_before=later)
            ).rowcount:
                return int(
                    conn.execute(select(user_revocations.c.issued_before).where(row)).scalar_one()
                )
            conn.execute(
                insert(user_revocations).values(
                    application_id=application_id, user_id=user_id, issued_before=issued_before
                )
            )
            return issued_before

        try:
            return await self._db.write(raise_it)
        except IntegrityError:  # inserted meanwhile by another request: raise that one
            return await self._db.write(raise_it)

    async def issued_before(self, application_id: int, user_id: str) -> int | None:
        query = select(user_revocations.c.issued_before).where(
            user_revocations.c.application_id == application_id,
            user_revocations.c.user_id == user_id,
        )
        return await self._db.read(lambda conn: conn.execute(query).scalar())

    # -- membership ----------------------------------------------------------------------------

    async def add_members(
        self, application_id: int, chat_number: int, user_ids: Sequence[str], at: int
    ) -> list[str]:
        wanted = list(dict.fromkeys(user_ids))

        def add(conn: Connection) -> list[str]:
            present = _present(conn, application_id, chat_number, wanted)
            new = [user for user in wanted if user not in present]
            if new:
                # What is stored already is not news to one who joins now: read up to the
                # chat's newest message, active since they joined.
                top = _top_number(conn, application_id, chat_number)
                statement = (
                    insert(chat_members)
                    .prefix_with("OR IGNORE", dialect="sqlite")
                    .prefix_with("IGNORE", dialect="mysql")
                )
                conn.execute(
                    statement,
                    [
                        {
                            "application_id": application_id,
                            "chat_number": chat_number,
                            "user_id": user,
                            "joined_at": at,
                            "active_at": at,
                            "top_number": top,
                            "last_read_number": top,
                        }
                        for user in new
                    ],
                )
            return new

        return await self._db.write(add)

    async def remove_members(
        self, application_id: int, chat_number: int, user_ids: Sequence[str]
    ) -> list[str]:
        wanted = list(dict.fromkeys(user_ids))

        def remove(conn: Connection) -> list[str]:
            present = _present(conn, application_id, chat_number, wanted)
            if present:
                conn.execute(
                    delete(chat_members).where(
                        chat_members.c.application_id == application_id,
                        chat_members.c.chat_number == chat_number,
                        chat_members.c.user_id.in_(present),
                    )
                )
            return [user for user in wanted if user in present]

        return await self._db.write(remove)

    async def member_of(
        self, application_id: int, user_id: str, chat_numbers: Sequence[int]
    ) -> set[int]:
        if not chat_numbers:
            return set()
        query = select(chat_members.c.chat_number).where(
            chat_members.c.application_id == application_id,
            chat_members.c.user_id == user_id,
            chat_members.c.chat_number.in_(sorted(set(chat_numbers))),
        )
        return await self._db.read(lambda conn: {int(n) for (n,) in conn.execute(query)})

    async def list_members(
        self, application_id: int, chat_number: int, after: int | None, limit: int, backward: bool
    ) -> list[Membership]:
        query = select(*MEMBER).where(
            chat_members.c.application_id == application_id,
            chat_members.c.chat_number == chat_number,
        )
        return await self._page(query, after, limit, backward)

    async def list_memberships(
        self, application_id: int, user_id: str, after: int | None, limit: int, backward: bool
    ) -> list[Membership]:
        query = select(*MEMBER).where(
            chat_members.c.application_id == application_id,
            chat_members.c.user_id == user_id,
        )
        return await self._page(query, after, limit, backward)

    async def _page(
        self, query: Any, after: int | None, limit: int, backward: bool
    ) -> list[Membership]:
        key = chat_members.c.id
        if after is not None:
            query = query.where(key < after if backward else key > after)
        query = query.order_by(key.desc() if backward else key).limit(limit)
        return await self._db.read(lambda conn: [membership(r) for r in conn.execute(query)])


def _top_number(conn: Connection, application_id: int, chat_number: int) -> int:
    query = (
        select(func.max(messages.c.number))
        .join(chats, chats.c.id == messages.c.chat_id)
        .where(chats.c.application_id == application_id, chats.c.number == chat_number)
    )
    return int(conn.execute(query).scalar() or 0)


def _present(
    conn: Connection, application_id: int, chat_number: int, user_ids: Sequence[str]
) -> set[str]:
    query = select(chat_members.c.user_id).where(
        chat_members.c.application_id == application_id,
        chat_members.c.chat_number == chat_number,
        chat_members.c.user_id.in_(user_ids),
    )
    return {user for (user,) in conn.execute(query)}
