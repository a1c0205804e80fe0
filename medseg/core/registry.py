"""Registries of named things (steps, networks, exporters) with did-you-mean errors.

A registered class is usually a frozen dataclass whose fields are its options, so
the same names serve Python (``Resample(spacing=...)``), YAML
(``- resample: {spacing: [...]}``) and :meth:`Registry.build`. An entry may carry
metadata (``info``) beside the object, e.g. a network's patch divisor.

medseg's own entries are registered by :mod:`medseg.builtins`, which installs itself
as the populate hook: the first lookup of a name that is not (yet) registered imports
the built-ins once, so ``build_step("resample")`` works without importing
``medseg.transforms`` first and this module never imports the packages above it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from medseg.errors import ConfigError, did_you_mean

T = TypeVar("T")

_populate_hook: Callable[[], None] | None = None
_populating = False


def set_populate_hook(hook: Callable[[], None] | None) -> None:
    """Install the function that registers the built-in entries (called at most once per miss)."""
    global _populate_hook
    _populate_hook = hook


def _populate() -> None:
    global _populating
    if _populate_hook is None or _populating:
        return
    _populating = True
    try:
        _populate_hook()
    finally:
        _populating = False


class Registry(Generic[T]):
    """Name → class/function map for one kind of thing (e.g. ``"step"``, ``"network"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._info: dict[str, Any] = {}

    def register(self, name: str, info: Any = None) -> Callable[[T], T]:
        """Decorator registering ``obj`` under the snake_case ``name`` (unique), with optional ``info``."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ConfigError(f"{self.kind} '{name}' is already registered by {self._items[name]!r}")
            self._items[name] = obj
            if info is not None:
                self._info[name] = info
            return obj

        return deco

    def _ensure(self, name: str | None = None) -> None:
        if name is None or name not in self._items:
            _populate()

    def get(self, name: str) -> T:
        """The entry for ``name``; unknown names raise :class:`ConfigError` with did-you-mean."""
        self._ensure(name)
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} '{name}'{did_you_mean(name, self._items)}")
        return self._items[name]

    def info(self, name: str) -> Any:
        """The metadata registered with ``name`` (None when there is none)."""
        self.get(name)
        return self._info.get(name)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._ensure()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self._ensure(name)
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def build(self, name: str, **options: Any) -> Any:
        """Instantiate ``name`` with keyword ``options``; unknown options raise with did-you-mean."""
        obj = self.get(name)
        check_options(f"{self.kind} '{name}'", obj, options)
        try:
            return obj(**options)  # type: ignore[operator]
        except TypeError as exc:
            raise ConfigError(f"{self.kind} '{name}': {exc}") from exc


def option_names(obj: Any) -> list[str] | None:
    """Accepted keyword names of a dataclass or callable (None when it takes ``**kwargs``)."""
    if dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj) if f.init]
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"]


def check_options(where: str, obj: Any, options: dict[str, Any]) -> None:
    """Raise :class:`ConfigError` for option names ``obj`` does not accept."""
    allowed = option_names(obj)
    if allowed is None:
        return
    for key in options:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown option '{key}'{did_you_mean(key, allowed)}")
