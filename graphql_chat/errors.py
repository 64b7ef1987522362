"""The one exception tree of the product.

    ChatError
    ├── InvalidInput      the caller sent something wrong         (REST 400/422, BAD_USER_INPUT)
    │   ├── MalformedRequest  the body is not the JSON we expect  (REST 400)
    │   └── UnsupportedMediaType  a write that is not JSON        (REST 415)
    ├── NotFound          unknown token, chat or message          (REST 404, NOT_FOUND)
    ├── Unauthenticated   an admin operation without credential   (REST 401, UNAUTHENTICATED)
    ├── Forbidden         a wrong credential, or a disabled one   (REST 403, FORBIDDEN)
    ├── TooLarge          request body over the configured limit  (REST 413, BAD_USER_INPUT)
    ├── Conflict          the write collides with another one     (REST 409, CONFLICT)
    │   └── KeyReused     an idempotency key sent with another create
    ├── Unavailable       a dependency failed; retry later        (REST 503, UNAVAILABLE)
    │   └── OutcomeUnknown    the write may have been stored      (REST 503, UNAVAILABLE)
    ├── SlowConsumer      a subscriber fell too far behind        (SLOW_CONSUMER)
    └── ConfigurationError  refused at start

Driver errors are translated into these at the adapter boundary; nothing else reaches a client.
"""

from __future__ import annotations


class ChatError(Exception):
    code = "INTERNAL_SERVER_ERROR"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def extensions(self) -> dict[str, object]:
        """What a GraphQL error made from this one carries (graphql-core copies it)."""
        return {"code": self.code}


class InvalidInput(ChatError):
    code = "BAD_USER_INPUT"
    status = 422

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MalformedRequest(InvalidInput):
    status = 400


class UnsupportedMediaType(InvalidInput):
    status = 415


class TooLarge(InvalidInput):
    status = 413


class NotFound(ChatError):
    code = "NOT_FOUND"
    status = 404


class Unauthenticated(ChatError):
    code = "UNAUTHENTICATED"
    status = 401


class Forbidden(ChatError):
    code = "FORBIDDEN"
    status = 403


class Conflict(ChatError):
    code = "CONFLICT"
    status = 409


class KeyReused(Conflict):
    """An idempotency key sent again with another create (another chat or body)."""

    def __init__(self) -> None:
        super().__init__(
            "this idempotency key was used for another create (another chat or body) "
            "within its window"
        )


class RateLimited(ChatError):
    """Over one of the rate limits: the policy's name, what it allows (`quota` per `window`
    seconds), and when a retry may succeed (`retry_after` seconds)."""

    code = "RATE_LIMITED"
    status = 429

    def __init__(self, policy: str, quota: int, window: int, retry_after: int) -> None:
        super().__init__(
            f"too many requests: at most {quota} per {window} s ({policy}); "
            f"retry after {retry_after} s"
        )
        self.policy = policy
        self.quota = quota
        self.window = window
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        """`Retry-After` and the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers)."""
        return {
            "Retry-After": str(self.retry_after),
            "RateLimit-Policy": f'"{self.policy}";q={self.quota};w={self.window}',
            "RateLimit": f'"{self.policy}";r=0;t={self.retry_after}',
        }

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "retryAfter": self.retry_after}


class Unavailable(ChatError):
    code = "UNAVAILABLE"
    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Recovering(Unavailable):
    """Numbering is being recovered after a Redis data loss: draws wait until it is open."""

    def __init__(self, detail: str | None = None) -> None:
        message = "numbering is being recovered after a Redis data loss; retry shortly"
        super().__init__(message if detail is None else f"{message} ({detail})")


class OutcomeUnknown(Unavailable):
    """The write reached the queue but cannot be acknowledged: it may or may not be stored."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"{reason}: the write may have been accepted; retrying may create a duplicate "
            "unless an idempotency key is sent"
        )


class Stopped(Unavailable):
    """The store was still unavailable when the driver asked to stop: nothing was committed
    by this call that a replay would not commit again."""

    def __init__(self) -> None:
        super().__init__("stopped while the store was unavailable")


class TokenClash(Conflict):
    """A generated token is already taken; draw another."""

    def __init__(self) -> None:
        super().__init__("the token is taken")


class Unstorable(InvalidInput):
    """The store cannot keep what a write holds (a value its driver refuses)."""

    def __init__(self) -> None:
        super().__init__("the write was refused by the store: it holds data it cannot keep")


class SlowConsumer(ChatError):
    """More events waited for a subscriber than its queue holds: it can resume from the last
    number it received."""

    code = "SLOW_CONSUMER"
    status = 429


class ConfigurationError(ChatError):
    pass
