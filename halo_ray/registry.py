"""One registry per kind of pluggable part (verifiers, objectives, data sources, backends).

CLI choices, config validation, ``--help`` and factories all read the same table, so a name can
never be accepted in one place and unknown in another.
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from halo_ray.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of factories.

    Args:
        kind: what the entries are ("verifier", "objective"...), used in error messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, doc: str | None = None) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; the doc defaults to its docstring's first line."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            text = doc or (getattr(obj, "__doc__", None) or "").strip().splitlines()
            self._docs[name] = text if isinstance(text, str) else (text[0] if text else "")
            return obj

        return add

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def doc(self, name: str) -> str:
        return self._docs[self.check(name)]

    def check(self, name: str, where: str = "") -> str:
        """Return ``name`` if it is registered, else raise ConfigError listing the known names."""
        if name in self._entries:
            return name
        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        at = f"{where}: " if where else ""
        raise ConfigError(f"{at}unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})")

    def get(self, name: str, where: str = "") -> T:
        return self._entries[self.check(name, where)]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries)
