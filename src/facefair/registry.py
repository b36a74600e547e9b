"""Name -> object registries that fill themselves, the way timm's ``register_model`` works.

A module registers what it defines with ``@registry.register(name)``.  Entries defined in a
higher layer are listed by module path in ``providers`` and imported the first time someone asks
for that name, so the module that owns the registry never imports the layers above it, and a
lookup works whatever was imported before.  Used for model architectures
(:mod:`facefair.models.registry`) and training methods (:mod:`facefair.train.methods`).
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Mapping, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, providers: Mapping[str, str]):
        self.kind = kind                       # what an entry is, for error messages
        self.providers = dict(providers)       # name -> module that registers it
        self.entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(entry: T) -> T:
            self.entries[name] = entry
            return entry
        return add

    def names(self) -> list[str]:
        """Every name a lookup can find, registered yet or not."""
        return sorted(set(self.entries) | set(self.providers))

    def get(self, name: str) -> T:
        if name not in self.entries and name in self.providers:
            importlib.import_module(self.providers[name])
        if name not in self.entries:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self.entries[name]
