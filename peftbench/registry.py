"""A plugin registry: every module of a package registers one entry with a class decorator. No torch import.

Shared by the method registry (peftbench/methods/) and the task registry (peftbench/tasks/): adding an entry is
adding a module to the package; `load_all` imports every module of it once, so nothing else needs an edit.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from typing import Generic, TypeVar

from .errors import PeftbenchError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, package: str, path: Iterable[str], kind: str):
        self.package, self.path, self.kind = package, list(path), kind  # kind: "method", "task" (for messages)
        self._entries: dict[str, T] = {}
        self._loaded = False

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: instantiate `cls` and register it under `cls.name`."""
        if cls.name in self._entries:
            raise RuntimeError(f"{self.kind} {cls.name!r} registered twice")
        self._entries[cls.name] = cls()
        return cls

    def load_all(self) -> dict[str, T]:
        """Import every module of the package once (but `base` and private ones); the entries in name order."""
        if not self._loaded:
            for info in pkgutil.iter_modules(self.path):
                if info.name != "base" and not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            self._loaded = True
        return dict(sorted(self._entries.items()))

    def get(self, name: str) -> T:
        """The entry called `name`, or a PeftbenchError with a 'did you mean'."""
        entries = self.load_all()
        if name not in entries:
            raise PeftbenchError(f"unknown {self.kind} {name!r}{did_you_mean(name, entries)}; known: "
                                 f"{', '.join(entries)}")
        return entries[name]
