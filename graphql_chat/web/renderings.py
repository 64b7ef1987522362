"""What an interface made of an object many requests share, kept while the object lives.

A page the page cache keeps is answered to many clients, and a live event goes to every
subscriber of its chat as one object: the interface that renders them keeps what it made
here, by the object's identity and how it was made, so that each is made once. An entry
goes when its object is collected (a page the cache dropped, an event every subscriber
has had), so this holds no more than the objects do."""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Renderings(Generic[V]):
    def __init__(self) -> None:
        self._made: dict[tuple[int, Hashable], V] = {}

    def get(self, of: object, how: Hashable) -> V | None:
        return self._made.get((id(of), how))

    def keep(self, of: object, how: Hashable, made: V) -> V:
        """Keep `made` for `of` (which must accept weak references) and return it."""
        key = (id(of), how)
        if key not in self._made:
            # Runs as `of` is collected, before its id can be another object's.
            weakref.finalize(of, self._made.pop, key, None)
        self._made[key] = made
        return made

    def __len__(self) -> int:
        return len(self._made)
