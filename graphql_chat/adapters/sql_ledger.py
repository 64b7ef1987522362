"""The numbering ledger on SQL (`graphql_chat.numbering.ports.Ledger`): the row that says
which epoch the store accepts draws of, fenced by recoveries' tokens, the applications' own
epochs (Redis Cluster), and the idempotency claims kept with writes. It runs on the store's
engine (`SqlStore.read` and `write`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy import Connection, select, tuple_, update

from graphql_chat.adapters.sql_rows import claimed_row
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import now_micros
from graphql_chat.numbering.ports import NumberingRecord
from graphql_chat.ports import Claimed
from graphql_chat.tables import applications, idempotency_keys, numbering


class SqlLedger:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def numbering(self) -> NumberingRecord:
        query = select(
            numbering.c.epoch, numbering.c.recovering, numbering.c.set_aside, numbering.c.generation
        )
        row = await self._store.read(
            lambda conn: conn.execute(query.where(numbering.c.id == 1)).one()
        )
        return NumberingRecord(
            int(row.epoch), bool(row.recovering), int(row.set_aside), int(row.generation)
        )

    async def fencing_token(self, pause: bool = True) -> int:
        """A fencing token for a recovery: larger than every token handed out before. With
        `pause`, numbering is marked recovering (idle workers stop consuming)."""
        values: dict[str, Any] = {"recovery_token": numbering.c.recovery_token + 1}
        if pause:
            values["recovering"] = True

        def take(conn: Connection) -> int:
            conn.execute(update(numbering).where(numbering.c.id == 1).values(**values))
            query = select(numbering.c.recovery_token).where(numbering.c.id == 1)
            return int(conn.execute(query).scalar_one())

        return await self._store.write(take)

    async def open_epoch(self, previous: int, token: int) -> bool:
        """Retire `previous` and open the next epoch, if `token` is still the latest fencing token.

        Workers hold a shared lock on the numbering row while they apply a batch, so this
        waits for batches in flight; every batch after it sees the new epoch.
        """
        return await self._advance(numbering.c.epoch, previous, token, recovering=False)

    async def advance_generation(self, previous: int, token: int) -> bool:
        """Make generation `previous + 1` the one whose write queue takes new writes, if
        `token` is still the latest fencing token. False: nothing changed."""
        return await self._advance(numbering.c.generation, previous, token)

    async def _advance(self, column: Any, previous: int, token: int, **also: object) -> bool:
        """`column` of the numbering row from `previous` to the next, if `token` is still the
        latest fencing token."""
        statement = (
            update(numbering)
            .where(numbering.c.id == 1, column == previous, numbering.c.recovery_token == token)
            .values({column: previous + 1, **also})
        )
        return bool(await self._store.write(lambda conn: conn.execute(statement).rowcount == 1))

    async def open_application_epochs(
        self, application_ids: Sequence[int], token: int
    ) -> dict[int, int] | None:
        """Retire the open epoch of each application and open its next, if `token` is still
        the latest fencing token: the new epochs by application (None: nothing changed). An
        application's open epoch is the larger of its own and the global one.

        Workers lock the rows of a batch's applications while they apply it, so this waits
        for batches in flight; every batch after it sets aside draws of the retired epochs.
        """
        ids = sorted(set(application_ids))

        def open_epochs(conn: Connection) -> dict[int, int] | None:
            fence = select(numbering.c.epoch).where(
                numbering.c.id == 1, numbering.c.recovery_token == token
            )
            if not self._store.is_sqlite:
                fence = fence.with_for_update()
            epoch = conn.execute(fence).scalar()
            if epoch is None:
                return None
            query = select(applications.c.id, applications.c.epoch).where(
                applications.c.id.in_(ids)
            )
            if not self._store.is_sqlite:
                query = query.order_by(applications.c.id).with_for_update()
            opened = {
                int(row.id): max(int(row.epoch), int(epoch)) + 1
                for row in conn.execute(query).all()
            }
            for app_id, opened_epoch in opened.items():
                conn.execute(
                    update(applications)
                    .where(applications.c.id == app_id)
                    .values(epoch=opened_epoch)
                )
            return opened

        return await self._store.write(open_epochs)

    async def iter_claims(
        self, batch_size: int, application_ids: Sequence[int] | None = None
    ) -> AsyncIterator[list[Claimed]]:
        after: tuple[int, str] = (0, "")
        while True:
            query = (
                select(idempotency_keys)
                .where(
                    tuple_(idempotency_keys.c.application_id, idempotency_keys.c.key) > after,
                    idempotency_keys.c.expires > now_micros(),
                )
                .order_by(idempotency_keys.c.application_id, idempotency_keys.c.key)
                .limit(batch_size)
            )
            if application_ids is not None:  # the primary key's leading column: a range each
                query = query.where(idempotency_keys.c.application_id.in_(application_ids))
            rows = await self._store.read(lambda conn, q=query: conn.execute(q).all())  # type: ignore[misc]
            if not rows:
                return
            after = (rows[-1].application_id, rows[-1].key)
            yield [claimed_row(row) for row in rows]
