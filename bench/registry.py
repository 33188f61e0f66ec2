"""One small generic registry: register by name, get with did-you-mean, list; plus entry-point plugins."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """Raised for a name no registry entry has; the message suggests the closest names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


def did_you_mean(name: str, choices: list[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
    """Named entries of one kind (backbones, datasets, strategies).

    Packages outside this repository add entries through the entry-point group
    ``entry_point_group``: each entry point names a module or object whose import registers entries.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, T] = {}
        self._plugins_loaded = False
        self.broken: dict[str, str] = {}  # entry point -> why its plugin could not be imported

    def register(self, name: str, entry: T) -> T:
        if name in self._entries and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = entry
        return entry

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@registry.decorator("name")`` registers the decorated object under ``name``."""
        return lambda entry: self.register(name, entry)

    def _load_plugins(self) -> None:
        """Import every plugin of the group. One that fails is set aside with a warning line naming it, so that
        commands which do not need it work; asking for a name it would have registered says why it is missing."""
        if self._plugins_loaded or self.entry_point_group is None:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            try:
                ep.load()
            except Exception as err:  # noqa: BLE001 - any failure of a plugin's import is the plugin's
                dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
                reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}"
                self.broken[ep.name] = (
                    f"the {self.kind} plugin '{ep.name}' ({ep.value}, from {dist}) cannot be imported: {reason}"
                )
                print(f"warning: {self.broken[ep.name]}", file=sys.stderr)

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            names = self.names()
            broken = "".join(f"; {why}" for why in self.broken.values())
            shown = name if len(name) <= 80 else f"{name[:80]}... ({len(name) - 80} more characters)"
            raise UnknownNameError(
                f"unknown {self.kind} '{shown}'{did_you_mean(name[:200], names)}; available: {', '.join(names)}{broken}"
            ) from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._load_plugins()
        return iter(sorted(self._entries.items()))
