"""What an interface made of a shared object is kept while the object lives, and no longer."""

from __future__ import annotations

import gc

from graphql_chat.domain import ChatRef, Message, instant, now_micros
from graphql_chat.live import EventKind, LiveEvent
from graphql_chat.paging import Page
from graphql_chat.web.renderings import Renderings


def test_a_rendering_is_kept_by_identity_and_by_how_it_was_made() -> None:
    made: Renderings[bytes] = Renderings()
    page = Page([Message(1, "a", instant(now_micros()), instant(now_micros()))], [1], False)
    twin = Page(page.items, page.keys, False)  # equal, not the same page
    assert made.keep(page, "json", b"[1]") == b"[1]"
    assert made.get(page, "json") == b"[1]"
    assert made.get(page, "text") is None
    assert made.get(twin, "json") is None


def test_a_rendering_goes_with_its_object() -> None:
    made: Renderings[str] = Renderings()
    kept = LiveEvent(EventKind.CREATED, ChatRef(1, 1, 1), shared=True)
    for n in range(100):
        made.keep(LiveEvent(EventKind.CREATED, ChatRef(n, 1, n), shared=True), None, f"view {n}")
    made.keep(kept, None, "kept")
    gc.collect()
    assert len(made) == 1 and made.get(kept, None) == "kept"
    del kept
    gc.collect()
    assert len(made) == 0
