"""Relay connections: a page of a list as GraphQL shows it, with its cursors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from graphql_chat.paging import Page
from graphql_chat.web.paging import Paging

PAGING = Paging(size="first", cursor="after", last="last", before="before")  # Relay's arguments

N = TypeVar("N")
T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    nodes: list[N]
    page_info: PageInfo
    total_count: int | None = strawberry.field(
        description="How many the whole list holds, where that costs nothing more to know "
        "(the chats of an application, the messages of a chat); otherwise null."
    )
    page: strawberry.Private[Page[Any]]

    @strawberry.field
    def edges(self) -> list[Edge[N]]:
        # Made only when selected: a cursor per node costs more than the node.
        return [Edge(cursor=c, node=n) for c, n in zip(self.page.cursors, self.nodes, strict=True)]


def connection(page: Page[T], shape: Callable[[T], N], total: int | None = None) -> Connection[N]:
    nodes = [shape(item) for item in page.items]
    return Connection(
        page=page,
        nodes=nodes,
        page_info=PageInfo(
            has_next_page=page.has_next,
            has_previous_page=page.has_previous,
            start_cursor=page.start_cursor,
            end_cursor=page.end_cursor,
        ),
        total_count=total,
    )
