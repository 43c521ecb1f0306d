"""One generic registry: a name maps to exactly one thing, declared where the thing is defined."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from benchmark.errors import OodbenchError, UnknownNameError

T = TypeVar("T")


def suggest(name: str, choices: list[str]) -> str:
    """' Did you mean ...?' for close matches of `name`, or ''."""
    by_lower: dict[str, str] = {}
    for c in choices:
        by_lower.setdefault(c.lower(), c)
    close = [by_lower[c] for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.5)]
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class Registry(Generic[T]):
    """Named objects of one kind (`kind` is used in messages: 'suite', 'method', ...)."""

    def __init__(
        self, kind: str, *, list_command: str | None = None, check: Callable[[str, T], None] | None = None
    ) -> None:
        self.kind = kind
        self.list_command = list_command or f"oodbench list {kind}s"
        self._check = check  # raises OodbenchError when a declaration is malformed
        self._items: dict[str, T] = {}

    def add(self, name: str, obj: T) -> T:
        if name in self._items:
            raise OodbenchError(f"{self.kind} {name!r} is registered twice; names must be unique.")
        if self._check is not None:
            self._check(name, obj)
        self._items[name] = obj
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@METHODS.register("coop")` on the class or function."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    @contextmanager
    def temporarily(self, name: str, obj: T) -> Iterator[T]:
        """Register `obj` for the duration of a `with` block (tests, throwaway specs), then remove it."""
        self.add(name, obj)
        try:
            yield obj
        finally:
            self._items.pop(name, None)

    @contextmanager
    def replaced(self, name: str, obj: T) -> Iterator[T]:
        """Swap the registered `name` for `obj` inside a `with` block (tests), then restore it."""
        old = self.get(name)
        self._items[name] = obj
        try:
            yield obj
        finally:
            self._items[name] = old

    def remove(self, name: str) -> None:
        """Unregister `name` if present (plugins that failed half-way, tests)."""
        self._items.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(
                f"Unknown {self.kind} {name!r}.{suggest(name, list(self._items))} "
                f"`{self.list_command}` shows the {len(self._items)} registered {self.kind}s."
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> list[tuple[str, T]]:
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def import_submodules(package: str, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Import every top-level module of `package` (not sub-packages, not names starting with `_` or in
    `skip`), in name order, so that each registers what it declares. Returns the module names imported."""
    pkg = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.ispkg)
    names = [n for n in names if not n.startswith("_") and n not in skip]
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return names
