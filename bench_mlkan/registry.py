"""A plain dict whose failed look-ups list the known names."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, T]):
    """``dict`` of name -> thing; ``registry["bad"]`` raises KeyError naming the known keys."""

    def __init__(self, kind: str, items: dict[str, T] | None = None):
        super().__init__(items or {})
        self.kind = kind

    def __missing__(self, key: str) -> T:
        raise KeyError(f"unknown {self.kind} {key!r}; known: {', '.join(sorted(self))}")

    def register(self, name: str, thing: T) -> T:
        """Add ``thing`` under ``name`` (a user's own model/task/baseline); returns it."""
        if name in self:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self[name] = thing
        return thing
