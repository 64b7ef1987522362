"""Applications, chats, messages, the events that carry writes, and the rules on input. No I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, NamedTuple, TypeAlias

from graphql_chat.errors import InvalidInput

_UNIX_START = datetime(1970, 1, 1, tzinfo=UTC)

# A time the answer at hand does not know (an update's create, a search hit indexed before
# messages carried times): the store does.
UNKNOWN_TIME = _UNIX_START


def instant(micros: int) -> datetime:
    """A time in microseconds since 1970-01-01 UTC as a UTC datetime (exact: no float)."""
    return _UNIX_START + timedelta(microseconds=micros)


def micros(at: datetime) -> int:
    """The inverse of `instant`."""
    return (at - _UNIX_START) // timedelta(microseconds=1)


def now_micros() -> int:
    return time.time_ns() // 1000


def iso(at: datetime) -> str:
    """A UTC time as ISO 8601 (RFC 3339) to the microsecond, fixed width: what the APIs say.

    A page's times share their seconds: each second's text is made once (`isoformat` costs
    twice the lookup and the microseconds' formatting)."""
    if at.tzinfo is not UTC:
        at = at.astimezone(UTC)
    second = math.floor(at.timestamp())
    prefix = _SECONDS.get(second)
    if prefix is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        # Arguments by position: by keyword, the call costs half as much again.
        prefix = _SECONDS[second] = at.isoformat("T", "seconds")[:-6]  # without "+00:00"
    return f"{prefix}.{at.microsecond:06d}Z"


_SECONDS: dict[int, str] = {}


def parse_iso(text: str) -> datetime:
    """The inverse of `iso`; any RFC 3339 time with a zone."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("a time needs a zone (Z for UTC)")
    return parsed.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Application:
    """`public_id` names it in its users' tokens (it reveals nothing); `users_manage_chats`:
    whether its users may create chats and add members to theirs (else only its backend)."""

    id: int
    token: str
    name: str
    chats_count: int
    public_id: str = ""
    users_manage_chats: bool = True


@dataclass(frozen=True, slots=True)
class Chat:
    id: int
    application_id: int
    number: int
    messages_count: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class User:
    """A person using an application, as a verified user token names them: the application
    (its id, its token, by which the service names it inside, and its public id) and the
    application's own id for the person. `manage_chats`: whether the application lets its
    users create chats and add members to theirs."""

    application_id: int
    token: str
    public_id: str
    id: str
    manage_chats: bool = True
    expires: int = 0  # when the token expires (seconds since 1970; 0: not said)


class ChatRef(NamedTuple):
    """A chat as a reader names it: its id, and its key (application id, number), which is
    how a write names it."""

    id: int
    application_id: int
    number: int


# Not frozen, unlike the other entities: a page makes one per row, and a frozen dataclass of
# these four fields takes 4.6 times as long to make (1.5 µs against 0.33 µs, CPython 3.11).
@dataclass(slots=True)
class Message:
    """`created_at`: when its create was accepted; `updated_at`: when the write whose body
    it holds was accepted (its create's time until an update is stored)."""

    number: int
    body: str
    created_at: datetime
    updated_at: datetime
    author: str | None = None  # the user who wrote it; None: the application's backend


@dataclass(frozen=True, slots=True)
class Claim:
    """An idempotency key's claim on a create: the client's key (hashed: any text a client
    sends becomes 32 hex characters) and what the create asks for (hashed too), so that a
    retry is told apart from a different create under the same key. It holds for `window`
    seconds from its draw."""

    key: str
    fingerprint: str
    window: int


IDEMPOTENCY_KEY_MAX_LENGTH = 255


def claim(key: object, window: int, *meaning: object) -> Claim:
    """The claim of a create with this idempotency key, for `window` seconds; `meaning` is
    what the create asks for. InvalidInput when the key is not 1 to 255 printable
    characters. A key in the quotes of a structured header string ("..."), as the IETF
    draft sends it, is the same key without them."""
    if not isinstance(key, str):
        raise InvalidInput("idempotencyKey must be a string", "idempotencyKey")
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH or not key.isprintable():
        raise InvalidInput(
            f"idempotencyKey must be 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} printable characters",
            "idempotencyKey",
        )
    _unicode(key, "idempotencyKey")
    return Claim(_digest(key), _digest(*meaning), window)


def _digest(*parts: object) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        data = str(part).encode("utf-8")
        hashed.update(len(data).to_bytes(8, "big") + data)
    return hashed.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ChatCreated:
    """Chat `chat_number` of application `application_id` was accepted.

    `epoch` is the numbering epoch the number was drawn in (0: embedded, or from a publisher
    older than epochs); workers refuse draws of an epoch that has been retired. `at` is when
    it was accepted, in microseconds since 1970-01-01 UTC (0 from a publisher older than
    times: the store then takes its own clock).
    """

    application_id: int
    chat_number: int
    epoch: int = 0
    at: int = 0
    claim: Claim | None = None  # its idempotency key: stored with it, kept for the window
    kind: Literal["chat"] = "chat"


@dataclass(frozen=True, slots=True)
class MessageWritten:
    """A message body was accepted, by a create or an update.

    `revision` orders the writes of one message: the stored body is the one with the highest
    revision, whatever order the events reach the writer in. A create and its updates are all
    `MessageWritten`; whichever arrives first inserts the row. `created` marks the create:
    its revision identifies the draw that took the number, so a create for a number that
    already holds a message from another draw is refused instead of overwriting it.
    `epoch` is the numbering epoch of the draw and `at` when it was accepted, as for
    `ChatCreated`.
    """

    application_id: int
    chat_number: int
    number: int
    body: str
    revision: int
    epoch: int = 0
    created: bool = False
    at: int = 0
    claim: Claim | None = None  # a create's idempotency key, as for `ChatCreated`
    author: str | None = None  # a create's author (a user id; None: the backend)
    kind: Literal["message"] = "message"


@dataclass(frozen=True, slots=True)
class ReadMarked:
    """A member moved their read marker in a chat: forward to `number` (a mark lower than the
    stored marker changes nothing), or, with `back`, to `number` exactly (mark unread). `at`
    (microseconds since 1970) orders a mark against a later move back: a mark accepted before
    a move back changes nothing once that is stored, whatever order the two reach the writer
    in. Marks draw no number: `epoch` is always 0 and `claim` None."""

    application_id: int
    chat_number: int
    user: str
    number: int
    at: int
    back: bool = False
    epoch: int = 0
    claim: None = None
    kind: Literal["read"] = "read"


Event: TypeAlias = ChatCreated | MessageWritten | ReadMarked


def lag_ms(events: Sequence[Event]) -> float:
    """The longest wait, from acceptance to now, of the events (0 if none has a time)."""
    oldest = min((event.at for event in events if event.at), default=0)
    return round((now_micros() - oldest) / 1000, 1) if oldest else 0.0


def new_public_id() -> str:
    """An application's public id: 90 random bits, never taken for a token (which is a UUID)."""
    return f"app_{secrets.token_urlsafe(15)}"


def new_signing_secret() -> str:
    """A secret to sign user tokens with (HS256): 256 random bits, base64url."""
    return secrets.token_urlsafe(32)


USER_ID_MAX_LENGTH = 255


def clean_user_id(value: object, field: str = "userId") -> str:
    """A user id as an application names its users: 1 to 255 printable characters (no
    control characters, no lone surrogates)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field)
    if not 1 <= len(value) <= USER_ID_MAX_LENGTH or not value.isprintable():
        raise InvalidInput(f"{field} must be 1 to {USER_ID_MAX_LENGTH} printable characters", field)
    return _unicode(value, field)


def new_token() -> str:
    """A v4 UUID: 122 random bits from the OS's CSPRNG, in the seed's token format."""
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


def clean_name(name: object, max_length: int) -> str:
    return _clean_text(name, "name", max_length)


def clean_body(body: object, max_length: int) -> str:
    return _clean_text(body, "body", max_length)


def _clean_text(value: object, field: str, max_length: int) -> str:
    if value is None:
        raise InvalidInput(f"{field} is required", field)
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field)
    if not value.strip():
        raise InvalidInput(f"{field} must not be empty", field)
    if len(value) > max_length:
        raise InvalidInput(f"{field} is longer than {max_length} characters", field)
    return _unicode(value, field)


def _unicode(value: str, field: str) -> str:
    """`value` if it is text every store can hold: no NUL, no lone surrogate (which JSON
    escapes and GraphQL variables can carry, and no UTF-8 encoder accepts)."""
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters", field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        message = f"{field} is not valid Unicode (it holds a lone surrogate)"
        raise InvalidInput(message, field) from None
    return value


TOKEN_MAX_LENGTH = 64  # tokens are 36 characters; anything much longer cannot be one


def clean_token(token: object, field: str = "token") -> str | None:
    """A token to look up: `None` when it cannot be one (too long), InvalidInput when it is
    not text at all."""
    if not isinstance(token, str):
        raise InvalidInput(f"{field} must be a string", field)
    _unicode(token, field)
    return token if len(token) <= TOKEN_MAX_LENGTH else None


def parse_number(value: object, field: str) -> int:
    """A chat or message number from a path or argument: a positive integer, or InvalidInput."""
    if isinstance(value, bool):
        raise InvalidInput(f"{field} must be a positive integer", field)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        number = int(value)
    else:
        raise InvalidInput(f"{field} must be a positive integer", field)
    if not 1 <= number <= 2**53:
        raise InvalidInput(f"{field} must be a positive integer", field)
    return number


MAX_TERM_LENGTH = 1000  # characters in one search term (a phrase of as many n-grams)


def search_terms(query: object, max_length: int) -> list[str]:
    """Split a search query on white space; every term must occur in a match (case-insensitive)."""
    if not isinstance(query, str):
        raise InvalidInput("query must be a string", "query")
    if len(query) > max_length:
        raise InvalidInput(f"query is longer than {max_length} characters", "query")
    _unicode(query, "query")
    terms = query.split()
    if not terms:
        raise InvalidInput("query must contain at least one term", "query")
    if any(len(term) > MAX_TERM_LENGTH for term in terms):
        raise InvalidInput(f"a query term is longer than {MAX_TERM_LENGTH} characters", "query")
    return terms


# Cursors are opaque to clients: a kind and a key, base64url-encoded.
CursorKind = Literal["application", "chat", "message", "search", "member", "inbox"]


def encode_cursor(kind: CursorKind, key: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode().rstrip("=")


MAX_KEY = 2**63 - 1  # the largest id or number a store holds (a signed 64-bit integer)
# An inbox cursor carries a time and a row id in one key (`ports.Membership.inbox_key`).
_MAX_KEYS: dict[CursorKind, int] = {"inbox": 2**127 - 1}


def decode_cursor(kind: CursorKind, cursor: str | None, name: str = "cursor") -> int | None:
    """The key a cursor of this list carries. A key has one encoding (the one
    `encode_cursor` gives); anything else is refused, as are keys no store can hold."""
    if cursor is None:
        return None
    try:
        if len(cursor) <= 64:
            padded = cursor + "=" * (-len(cursor) % 4)
            found, _, key = base64.urlsafe_b64decode(padded.encode()).decode().partition(":")
            if (
                found == kind
                and key.isascii()
                and key.isdigit()
                and int(key) <= _MAX_KEYS.get(kind, MAX_KEY)
                and encode_cursor(kind, int(key)) == cursor
            ):
                return int(key)
    except (binascii.Error, UnicodeError, ValueError):
        pass
    raise InvalidInput(f"{name} is not a cursor of this list", name)


def page_size(size: object, default: int, maximum: int, name: str = "size") -> int:
    """A page's size as asked for (`name` is what the interface calls it, for its errors)."""
    if size is None:
        return default
    if isinstance(size, bool) or not isinstance(size, int):
        raise InvalidInput(f"{name} must be an integer", name)
    if not 1 <= size <= maximum:
        raise InvalidInput(f"{name} must be between 1 and {maximum}", name)
    return size


NodeKind = Literal["Application", "Chat", "Message"]
_NODE_KINDS: tuple[NodeKind, ...] = ("Application", "Chat", "Message")
_NODE_PARTS = {"Application": 0, "Chat": 1, "Message": 2}


def _node_mac(token: str, payload: str) -> str:
    return hmac.new(token.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]


def user_scope(token: str) -> str:
    """What ids shown to an application's users are signed with instead of its token: such
    an id names its object only to a user token of a member, never without one."""
    return f"{token}\x00user"


def global_id(kind: NodeKind, application_id: int, token: str, *numbers: int) -> str:
    """An object's Relay id: its kind, its application's id and its numbers, signed with the
    application's token (HMAC-SHA256). It does not reveal the token, and without the token no
    one can make the id of an object: `node(id:)` answers only ids made by someone who had it."""
    payload = ":".join([kind, str(application_id), *map(str, numbers)])
    raw = f"{payload}:{_node_mac(token, payload)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class NodeId:
    kind: NodeKind
    application_id: int
    numbers: tuple[int, ...]
    payload: str
    mac: str

    def signed_by(self, token: str) -> bool:
        return hmac.compare_digest(_node_mac(token, self.payload), self.mac)


def parse_global_id(value: object) -> NodeId | None:
    """The parts of a Relay id, unverified (`NodeId.signed_by`); None when it is not one."""
    if not isinstance(value, str) or len(value) > 200:
        return None
    try:
        raw = base64.urlsafe_b64decode((value + "=" * (-len(value) % 4)).encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        return None
    payload, _, mac = raw.rpartition(":")
    kind, *parts = payload.split(":")
    if kind not in _NODE_KINDS or len(parts) != 1 + _NODE_PARTS[kind] or len(mac) != 32:
        return None
    if not all(p.isascii() and p.isdigit() and len(p) <= 18 for p in parts):
        return None
    numbers = tuple(int(p) for p in parts)
    return NodeId(kind, numbers[0], numbers[1:], payload, mac)
