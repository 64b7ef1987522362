"""User tokens: JSON Web Tokens an application's backend signs for its users with the
application's signing secret (HS256, RFC 7519), verified here with PyJWT, algorithms pinned.

A token names its application by its public id (`iss`) and the user by the application's
own id for them (`sub`); `iat` and `exp` are required, `exp` at most the longest lifetime
the server allows from now, `nbf` honoured when given. No I/O: the caller finds the
secrets the issuer's tokens verify with (`issuer`, then `verify`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from graphql_chat.domain import clean_user_id
from graphql_chat.errors import InvalidInput, Unauthenticated

ALGORITHM = "HS256"
MAX_TOKEN_LENGTH = 4096  # a token of ours is about 250 characters
LEEWAY_SECONDS = 30  # clocks of the signing backend and of this server may differ this much
_REQUIRED = ["exp", "iat", "iss", "sub"]


@dataclass(frozen=True, slots=True)
class UserClaims:
    issuer: str  # the application's public id
    user: str
    issued_at: int  # seconds since 1970
    expires: int
    secret: str  # the one of the secrets given that verified it


def issuer(token: str) -> str:
    """The public id of the application a token says signed it (not yet verified)."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthenticated(f"the user token is longer than {MAX_TOKEN_LENGTH} characters")
    try:
        unverified = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthenticated("the user token is not a JSON Web Token") from None
    header, claims = unverified["header"], unverified["payload"]
    if header.get("alg") != ALGORITHM:
        raise Unauthenticated(f"a user token must be signed with {ALGORITHM}")
    named = claims.get("iss")
    if not isinstance(named, str) or not named:
        raise Unauthenticated("the user token names no application (iss)")
    return named


def verify(
    token: str, secrets: Sequence[str], public_id: str, max_lifetime: int, now: int
) -> UserClaims:
    """The token's claims, if one of `secrets` signed it and it holds now (`now` and
    `max_lifetime` in seconds); `Unauthenticated` saying why not."""
    for secret in secrets:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                issuer=public_id,
                leeway=LEEWAY_SECONDS,
                options={"require": _REQUIRED, "verify_aud": False},
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the user token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the user token is not valid yet") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthenticated(f"the user token has no {error.claim} claim") from None
        except jwt.PyJWTError:
            raise Unauthenticated("the user token is not valid") from None
        break
    else:
        raise Unauthenticated("the user token's signature is not valid")
    expires, issued_at = claims["exp"], claims["iat"]
    if not isinstance(issued_at, int) or not isinstance(expires, int):
        raise Unauthenticated("the user token's iat and exp must be whole seconds")
    if expires > now + max_lifetime + LEEWAY_SECONDS:
        raise Unauthenticated(
            f"the user token expires too late: at most {max_lifetime} seconds from now"
        )
    try:
        user = clean_user_id(claims["sub"], "sub")
    except InvalidInput as error:
        raise Unauthenticated(f"the user token's subject is not a user id: {error}") from None
    return UserClaims(public_id, user, issued_at, expires, secret)


def mint(secret: str, public_id: str, user: str, lifetime: int, now: int) -> str:
    """A token for `user` of the application `public_id`, valid for `lifetime` seconds."""
    claims = {"iss": public_id, "sub": user, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, secret, algorithm=ALGORITHM)
