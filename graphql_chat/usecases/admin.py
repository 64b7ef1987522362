"""Who may do what only an operator may: list every application, read the metrics."""

from __future__ import annotations

import hmac

from graphql_chat.config import Settings
from graphql_chat.errors import Forbidden, Unauthenticated


class Admin:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def authorize(self, authorization: str | None, what: str = "listing applications") -> None:
        """Listing applications shows every token (and the metrics every operation's name
        and rate): it needs `Authorization: Bearer ADMIN_TOKEN`. Without ADMIN_TOKEN it
        stays open only on a loopback-bound server."""
        expected = self._settings.admin_token
        if expected is None:
            if self._settings.loopback:
                return
            raise Forbidden(
                f"{what} is disabled: this server is reachable from other "
                "machines and ADMIN_TOKEN is not set"
            )
        if not authorization:
            raise Unauthenticated(f"{what} needs Authorization: Bearer <ADMIN_TOKEN>")
        scheme, _, credential = authorization.partition(" ")
        given = credential.strip().encode("utf-8", "surrogatepass")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, expected.encode()):
            raise Forbidden("the admin credential is not valid")
