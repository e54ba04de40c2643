"""One small registry class for every kind of plug-in (model adapters, runtimes, importance criteria).

Entries are registered by name; a duplicate name raises. Lazy entries are ``"module:attr"``
strings so that listing names never imports a heavy backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from typing import Generic, TypeVar

from edgeprune.errors import EdgepruneError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> plug-in mapping for one kind of plug-in."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, obj: T | str | None = None) -> Callable[[T], T] | T | str:
        """Register ``obj`` under ``name``; without ``obj`` it works as a class/function decorator."""
        if obj is None:
            return lambda o: self.register(name, o)  # type: ignore[return-value]
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj
        return obj

    def names(self) -> list[str]:
        """Registered names, in registration order (the order adapters are tried in)."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        """Return the plug-in, importing it if it was registered lazily."""
        try:
            entry = self._entries[name]
        except KeyError:
            raise EdgepruneError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'}"
            ) from None
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            try:
                entry = getattr(import_module(module), attr)
            except ModuleNotFoundError as e:
                if e.name != module:
                    raise  # a dependency of the plug-in is missing: its own message says which
                from edgeprune import __version__

                raise EdgepruneError(
                    f"{self.kind} {name!r} is declared but not implemented in edgeprune {__version__}"
                ) from None
            self._entries[name] = entry
        return entry  # type: ignore[return-value]
