"""The page cache's rules: a page is kept only when no write to its chat overlapped its read,
dropped when a write begins, and the memory it holds stays within its bound."""

from __future__ import annotations

from graphql_chat.pages import PageCache

A, B = (1, 1), (1, 2)  # (application id, chat number) of chats 10 and 20


def _cache(max_bytes: int = 1000, max_chats: int = 100) -> PageCache[str]:
    cache: PageCache[str] = PageCache(max_bytes, len, max_chats)
    cache.learn(10, A)
    cache.learn(20, B)
    return cache


def test_a_page_read_with_no_write_in_between_is_kept_until_a_write_to_its_chat_begins() -> None:
    cache = _cache()
    cache.keep(cache.reading(10), "newest", "page of 10")
    cache.keep(cache.reading(20), "newest", "page of 20")
    assert cache.get(10, "newest") == "page of 10"
    assert cache.get(10, "first") is None
    cache.writing([A])
    assert cache.get(10, "newest") is None  # dropped as the write begins, not when it ends
    assert cache.get(20, "newest") == "page of 20"  # another chat's page stays
    cache.written([A])
    assert cache.get(10, "newest") is None
    assert cache.bytes == len("page of 20")


def test_a_page_read_while_a_write_to_its_chat_is_in_flight_is_not_kept() -> None:
    cache = _cache()
    cache.writing([A])
    assert cache.reading(10) is None
    cache.keep(cache.reading(10), "newest", "read mid-write")
    assert cache.get(10, "newest") is None
    cache.keep(cache.reading(20), "newest", "other chat")  # a write elsewhere does not matter
    assert cache.get(20, "newest") == "other chat"
    cache.written([A])
    cache.keep(cache.reading(10), "newest", "after")
    assert cache.get(10, "newest") == "after"


def test_two_writes_in_flight_to_one_chat_keep_it_uncached_until_both_end() -> None:
    cache = _cache()
    cache.writing([A])
    cache.writing([A, B])
    cache.written([A])
    assert cache.reading(10) is None
    cache.written([A, B])
    assert cache.reading(10) is not None and cache.reading(20) is not None


def test_a_page_whose_read_a_write_overtook_is_not_kept() -> None:
    """The read began, a write to the chat began and ended (committed) before the read came
    back with what it saw before the commit: keeping it would answer a stale page."""
    cache = _cache()
    began = cache.reading(10)
    cache.writing([A])
    cache.written([A])
    cache.keep(began, "newest", "stale")
    assert cache.get(10, "newest") is None
    began = cache.reading(10)
    cache.writing([A])  # still in flight when the read returns
    cache.keep(began, "newest", "stale")
    assert cache.get(10, "newest") is None


def test_a_chat_not_known_is_read_every_time() -> None:
    cache = _cache()
    assert cache.reading(30) is None
    cache.keep(cache.reading(30), "newest", "page")
    assert cache.get(30, "newest") is None


def test_a_chat_forgotten_and_learnt_again_does_not_keep_a_read_begun_before() -> None:
    cache = _cache(max_chats=2)
    began = cache.reading(10)
    cache.learn(30, (1, 3))  # no room: the idle chats (10 and 20) are forgotten
    cache.learn(10, A)
    cache.writing([A])
    cache.written([A])
    cache.learn(40, (1, 4))
    cache.learn(10, A)
    cache.keep(began, "newest", "stale")
    assert cache.get(10, "newest") is None


def test_memory_stays_within_its_bound_the_least_recently_used_going_first() -> None:
    cache = _cache(max_bytes=100)
    for n in range(4):
        cache.keep(cache.reading(10), n, "x" * 30)
    assert cache.bytes == 90
    assert [cache.get(10, n) is not None for n in range(4)] == [False, True, True, True]
    assert cache.get(10, 1) is not None  # used: now the most recent
    cache.keep(cache.reading(20), "b", "y" * 30)
    assert cache.bytes == 90
    assert cache.get(10, 2) is None  # the least recently used went
    assert cache.get(10, 1) is not None and cache.get(10, 3) is not None
    cache.keep(cache.reading(20), "huge", "z" * 101)  # larger than the whole cache
    assert cache.get(20, "huge") is None
    assert cache.bytes == 90
    cache.keep(cache.reading(10), 1, "x" * 10)  # kept again: counted once
    assert cache.bytes == 70


def test_known_chats_stay_within_their_bound() -> None:
    cache = _cache(max_chats=10)
    cache.keep(cache.reading(10), "newest", "page")
    for chat in range(100, 200):
        cache.learn(chat, (2, chat))
    assert len(cache._chats) <= 10
    cache.writing([(2, 150)])
    cache.written([(2, 150)])
    kept = cache.get(10, "newest")
    assert cache.bytes == (len(kept) if kept is not None else 0)
