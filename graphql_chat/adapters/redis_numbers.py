"""The numbers port on Redis: one Lua script (`redis_lua/draw.lua`) per draw.

Every draw reads its epoch in the same script and answers with it; events carry it to the
workers. A counter is seeded from the store's highest number only in the epoch it belongs to,
and a new chat's or application's counter starts at 0 without asking the store. When the
epoch is missing (Redis lost its data) a draw answers `Recovering`; opening the next epoch is
the numbering recovery's (`graphql_chat.numbering`), which this adapter knows nothing of.

Draws coalesce (`graphql_chat.batching`): the draws of concurrent requests go to Redis as one
pipeline of script calls, one round trip for all of them.

**Idempotency keys** are claimed by the draw script itself, in the same call: a key already
claimed answers the draw that claimed it (or a conflict, for another create), otherwise the
draw claims it for its window.
"""

from __future__ import annotations

from typing import Any

from graphql_chat.adapters.redis_scripts import Answer, Call, RedisScripts
from graphql_chat.batching import Coalescer
from graphql_chat.domain import Claim
from graphql_chat.errors import KeyReused, NotFound, Recovering
from graphql_chat.ports import Drawn, Seeds

_RECOVERING = -1
_UNSEEDED_CHATS = -2
_UNSEEDED_MESSAGES = -3
_EPOCH_CHANGED = -4
_CLAIM_CONFLICT = -5
_NO_CHAT = 0

_IN_FLIGHT = 4  # pipelines in flight at once, per process


class RedisNumbers:
    def __init__(self, scripts: RedisScripts, store: Seeds) -> None:
        """`store`: where counters are seeded from, in an epoch that has not seen them."""
        self._scripts = scripts
        self._redis = scripts.redis
        self._keys = scripts.keys
        self._store = store
        self._draw: Coalescer[Call, Answer] = Coalescer(
            self._draws, "redis_draw", in_flight=_IN_FLIGHT
        )
        self._open: Coalescer[tuple[int, int], bool] = Coalescer(
            self._epochs_open, "redis_epoch", in_flight=_IN_FLIGHT
        )

    async def start(self) -> None:
        await self._scripts.start()

    async def close(self) -> None:
        await self._scripts.close()

    async def ping(self) -> None:
        """Redis answers (every master of a cluster). Whether numbering is open is the
        recovery's to say."""
        await self._scripts.ping()

    # -- draws ---------------------------------------------------------------------------------

    async def next_chat(self, application_id: int, claim: Claim | None = None) -> Drawn:
        drawn = await self._drawn(application_id, None, None, claim)
        return Drawn(drawn.number, 0, drawn.epoch, drawn.at, drawn.replayed, drawn.durable)

    async def draw_message(
        self, application_id: int, chat_number: int, claim: Claim | None = None
    ) -> Drawn:
        return await self._drawn(application_id, chat_number, None, claim)

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> Drawn:
        return await self._drawn(application_id, chat_number, number)

    async def _drawn(
        self,
        application_id: int,
        chat_number: int | None,
        update: int | None,
        claim: Claim | None = None,
    ) -> Drawn:
        """A draw: a new chat (`chat_number` None), a new message, or a revision of message
        `update`. Chats unseeded, messages unseeded, drawn; all again if an epoch opened
        while a seed was read."""
        seed_epoch: int | str = ""
        chats_seed: int | str = ""
        messages_seed: int | str = ""
        claimed = ["", "", ""] if claim is None else [claim.key, claim.fingerprint, claim.window]
        for _ in range(7):
            args: list[str | int] = [
                seed_epoch,
                self._keys.app(application_id),
                *claimed,
                chats_seed,
                "" if chat_number is None else chat_number,
                "" if update is None else update,
                messages_seed,
            ]
            answer = await self._draw(([self._keys.epoch_of(application_id)], args))
            assert isinstance(answer, list)
            number, revision, epoch = (int(value) for value in answer[:3])
            if number == _RECOVERING:
                raise Recovering()
            if number == _EPOCH_CHANGED:  # seeds read in an older epoch: read them again
                seed_epoch, chats_seed, messages_seed = "", "", ""
            elif number == _UNSEEDED_CHATS:
                seed_epoch = epoch
                chats_seed = await self._store.max_chat_number(application_id)
            elif number == _UNSEEDED_MESSAGES and chat_number is not None:
                seed_epoch = epoch
                messages_seed = await self._store.max_message_number(application_id, chat_number)
            elif number == _CLAIM_CONFLICT:
                raise KeyReused()
            elif len(answer) == 5:  # the draw that claimed the key, as the script kept it
                at, replayed = int(answer[3]), int(answer[4])
                return Drawn(number, revision, epoch, at, replayed=True, durable=replayed == 2)
            elif number == _NO_CHAT and revision == 0:
                raise NotFound(f"chat {chat_number} not found")
            elif number == _NO_CHAT:
                raise NotFound(f"message {update} not found in chat {chat_number}")
            else:
                return Drawn(number, revision, epoch, revision)
        raise Recovering()

    async def _draws(self, draws: list[Call]) -> list[Answer]:
        return await self._scripts.run("draw", draws)

    # -- what else the API needs from Redis ------------------------------------------------------

    async def still_open(self, application_id: int, epoch: int) -> bool:
        """Whether `epoch` is still the application's open epoch (checked after the broker
        confirmed a write drawn in it: only then is the write acknowledged)."""
        return await self._open((application_id, epoch))

    async def _epochs_open(self, asked: list[tuple[int, int]]) -> list[bool]:
        """One pipeline reading each epoch key asked about (one key, unless each
        application has its own)."""
        keys = sorted({self._keys.epoch_of(app_id) for app_id, _ in asked})

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                return await pipe.execute()

        epochs = dict(zip(keys, await self._scripts.guarded(read()), strict=True))
        return [
            epochs[self._keys.epoch_of(app_id)] == str(epoch).encode() for app_id, epoch in asked
        ]

    async def register_application(
        self, application_id: int, token: str, epoch: int | None = None
    ) -> None:
        """A new application: its chats counter starts at 0, its token is known to every API
        process (so creates need neither the store nor a warm cache). With `epoch`, the
        application's epoch opens there if it has none (its own epoch, on Redis Cluster)."""
        await self._scripts.one(
            "new_application",
            [self._keys.epoch_of(application_id)],
            [self._keys.app(application_id), "" if epoch is None else epoch],
        )
        await self.remember_token(token, application_id)

    async def remember_token(self, token: str, application_id: int) -> None:
        await self._scripts.guarded(self._redis.set(self._keys.token(token), application_id))

    async def application_id(self, token: str) -> int | None:
        found = await self._scripts.guarded(self._redis.get(self._keys.token(token)))
        return None if found is None else int(found)
