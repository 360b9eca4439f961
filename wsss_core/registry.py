"""A name → factory registry, the way timm registers models: modules register what they define with a
decorator, and the package imports its members so that everything is registered on first use."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (classes or factories) of one kind, e.g. methods or backbones."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}
        self._imported = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@METHODS.register("cti")``."""

        def decorate(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise KeyError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorate

    def _import_members(self) -> None:
        """Import every module of ``package`` once so their decorators run."""
        if self._imported or self.package is None:
            return
        self._imported = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")

    def get(self, name: str) -> T:
        """The entry called ``name``; an unknown name lists the known ones."""
        self._import_members()
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown {self.kind} '{name}'; known: {known}") from None

    def names(self) -> list[str]:
        self._import_members()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._import_members()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
