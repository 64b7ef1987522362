"""What an interface calls a page's size and cursor (its errors use these names), and the
page its arguments ask for, checked against the settings' default and maximum sizes."""

from __future__ import annotations

from dataclasses import dataclass

from graphql_chat.config import Settings
from graphql_chat.domain import CursorKind, decode_cursor, page_size
from graphql_chat.errors import InvalidInput
from graphql_chat.paging import PageRequest


@dataclass(frozen=True, slots=True)
class Paging:
    """What an interface calls a page's size and cursor, forward and backward."""

    size: str
    cursor: str
    last: str = "last"
    before: str = "before"


def page_request(
    settings: Settings,
    kind: CursorKind,
    names: Paging,
    first: object = None,
    after: str | None = None,
    last: object = None,
    before: str | None = None,
) -> PageRequest:
    """Forward (`first` items after the `after` cursor) or backward (`last` items before
    the `before` cursor, the newest without one); the two ways do not mix."""
    default, maximum = settings.default_page_size, settings.max_page_size
    if last is None and before is None:
        size = page_size(first, default, maximum, names.size)
        return PageRequest(size, decode_cursor(kind, after, names.cursor))
    if first is not None or after is not None:
        raise InvalidInput(
            f"page forward with {names.size} and {names.cursor}, or backward with "
            f"{names.last} and {names.before}, not both",
            names.last if last is not None else names.before,
        )
    size = page_size(last, default, maximum, names.last)
    return PageRequest(size, decode_cursor(kind, before, names.before), backward=True)
