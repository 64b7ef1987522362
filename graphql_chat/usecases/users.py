"""Users of an application: the tokens its backend gives them (minted here on request, or
signed by the backend itself with the application's signing secret), the secret's rotation,
and revoking one user's tokens. A request's `Authorization: Bearer <user token>` becomes a
`User` here; what they may reach is `members`."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime

from graphql_chat import user_tokens
from graphql_chat.config import Settings
from graphql_chat.domain import User, clean_user_id, instant, new_signing_secret, now_micros
from graphql_chat.errors import InvalidInput, NotFound, Unauthenticated
from graphql_chat.ports import SigningKeys, UserRecords
from graphql_chat.usecases.caches import BoundedCache, ExpiringCache
from graphql_chat.usecases.directory import Directory

_CACHE_SIZE = 100_000
_NONE = SigningKeys(0, "", "", "", None, None, False)  # an unknown public id, remembered


@dataclass(frozen=True, slots=True)
class MintedToken:
    token: str
    user_id: str
    expires_at: datetime


class Users:
    def __init__(self, settings: Settings, records: UserRecords, directory: Directory) -> None:
        self._settings = settings
        self._records = records
        self._directory = directory
        ttl = settings.access_recheck_ms / 1000
        self._keys: ExpiringCache[str, SigningKeys] = ExpiringCache(_CACHE_SIZE, ttl)
        self._revoked: ExpiringCache[tuple[int, str], int] = ExpiringCache(_CACHE_SIZE, ttl)
        # Tokens verified before, with their claims: a token never changes, so one seen again
        # is checked against what may have changed since (its expiry; whether the secret that
        # signed it still verifies; a revocation) without parsing it again (~130 µs a token).
        self._verified: BoundedCache[str, user_tokens.UserClaims] = BoundedCache(_CACHE_SIZE)

    # -- who calls -----------------------------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> User | None:
        """The user an `Authorization: Bearer <user token>` names; None when the request
        carries no user token (no header, or another credential, such as ADMIN_TOKEN);
        `Unauthenticated` for a user token that does not hold."""
        if not authorization:
            return None
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or credential.count(".") != 2:
            return None
        return await self.verify(credential)

    async def verify(self, token: str) -> User:
        now = now_micros()
        claims = self._verified.get(token)
        keys = None if claims is None else await self._signing_keys(claims.issuer)
        if (
            claims is None
            or keys is None
            or claims.secret not in keys.verifying(now)
            or claims.expires + user_tokens.LEEWAY_SECONDS <= now // 1_000_000
        ):
            public_id = user_tokens.issuer(token)
            keys = await self._signing_keys(public_id)
            if keys is None:
                raise Unauthenticated("the user token's application (iss) is unknown")
            claims = user_tokens.verify(
                token,
                keys.verifying(now),
                public_id,
                self._settings.user_token_max_lifetime_seconds,
                now // 1_000_000,
            )
            self._verified.put(token, claims)
        revoked = await self._issued_before(keys.application_id, claims.user)
        if revoked is not None and claims.issued_at < revoked:
            raise Unauthenticated("the user token has been revoked")
        return User(
            keys.application_id,
            keys.token,
            keys.public_id,
            claims.user,
            keys.users_manage_chats,
            claims.expires,
        )

    async def _signing_keys(self, public_id: str) -> SigningKeys | None:
        if len(public_id) > 32:
            return None
        found = self._keys.get(public_id)
        if found is None:
            found = await self._records.signing_keys(public_id) or _NONE
            self._keys.put(public_id, found)
        return None if found is _NONE else found

    async def _issued_before(self, application_id: int, user: str) -> int | None:
        key = (application_id, user)
        found = self._revoked.get(key)
        if found is None:
            found = await self._records.issued_before(application_id, user) or 0
            self._revoked.put(key, found)
        return found or None

    # -- the backend's calls (application token) -----------------------------------------------

    async def mint(self, token: str, user_id: object, lifetime: object = None) -> MintedToken:
        """A user token for `user_id`, valid `lifetime` seconds (USER_TOKEN_LIFETIME_SECONDS
        by default, at most USER_TOKEN_MAX_LIFETIME_SECONDS)."""
        user = clean_user_id(user_id)
        longest = self._settings.user_token_max_lifetime_seconds
        if lifetime is None:
            lifetime = min(self._settings.user_token_lifetime_seconds, longest)
        if (
            isinstance(lifetime, bool)
            or not isinstance(lifetime, int)
            or not 1 <= lifetime <= longest
        ):
            raise InvalidInput(f"expiresIn must be 1 to {longest} seconds", "expiresIn")
        keys = await self.signing_keys(token)
        now = int(time.time())
        minted = user_tokens.mint(keys.secret, keys.public_id, user, lifetime, now)
        return MintedToken(minted, user, instant((now + lifetime) * 1_000_000))

    async def signing_keys(self, token: str) -> SigningKeys:
        app_id = await self._directory.application_id(token)
        keys = await self._records.signing_keys_of(app_id)
        if keys is None:
            raise NotFound("application not found")
        return keys

    async def rotate(self, token: str, previous_valid_for: object = None) -> SigningKeys:
        """A new signing secret; the one it replaces still verifies for `previous_valid_for`
        seconds (SIGNING_SECRET_OVERLAP_SECONDS by default; 0 ends it now, as after a leak)."""
        overlap = self._settings.signing_secret_overlap_seconds
        if previous_valid_for is not None:
            if (
                isinstance(previous_valid_for, bool)
                or not isinstance(previous_valid_for, int)
                or not 0 <= previous_valid_for <= 30 * 86_400
            ):
                raise InvalidInput(
                    "previousValidFor must be 0 to 2592000 seconds", "previousValidFor"
                )
            overlap = previous_valid_for
        app_id = await self._directory.application_id(token)
        until = now_micros() + overlap * 1_000_000
        keys = await self._records.rotate_secret(app_id, new_signing_secret(), until)
        if keys is None:
            raise NotFound("application not found")
        self._keys.forget(keys.public_id)  # (this process holds the change at once)
        return keys

    async def let_users_manage_chats(self, token: str, allowed: bool) -> None:
        """Whether the application's users may create chats and add members (every process
        holds the change within ACCESS_RECHECK_MS)."""
        keys = await self.signing_keys(token)
        await self._records.set_users_manage_chats(keys.application_id, allowed)
        self._keys.forget(keys.public_id)

    async def revoke(self, token: str, user_id: object, issued_before: datetime | None) -> datetime:
        """Refuse the user's tokens issued before `issued_before` (now by default; a token's
        `iat` is in whole seconds, so "now" refuses those of this second too). Returns the
        time that holds (an earlier revocation to a later time stays)."""
        user = clean_user_id(user_id)
        app_id = await self._directory.application_id(token)
        if issued_before is None:
            seconds = math.floor(time.time()) + 1
        else:
            seconds = math.ceil(issued_before.timestamp())
        held = await self._records.revoke(app_id, user, seconds)
        self._revoked.forget((app_id, user))
        return instant(held * 1_000_000)
