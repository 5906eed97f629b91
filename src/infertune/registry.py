"""One small registry for everything chosen by name: tasks, objectives, verifiers, sampler backends, selection rules.

Each kind of thing keeps a ``Registry``; entries register themselves where they are defined, and every user-facing
list of names (help texts, error messages) is generated from it, so what ``--help`` offers and what an error says
is known can never disagree. An entry is any object; ``register`` can attach it directly or decorate a factory.
"""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind. ``kind`` is how errors name them ("objective", "task", ...).

    Names may take an argument after a colon (``reasoning-gym:gsm_symbolic``) or an equals sign (``rm=PATH``); the
    registry stores the bare name and ``split`` separates the two, so lookups of either form agree.
    """

    def __init__(self, kind: str, *, argument_hint: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._hints: dict[str, str] = dict(argument_hint or {})

    def register(self, name: str, entry: T | None = None, *, argument: str | None = None):
        """Register ``entry`` under ``name`` (returns it), or use as a decorator when ``entry`` is omitted.
        ``argument`` documents a required argument, e.g. ``":<dataset>"`` or ``"=PATH"``."""
        if argument:
            self._hints[name] = argument

        def add(value: T) -> T:
            if name in self._entries and self._entries[name] is not value:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = value
            return value

        return add(entry) if entry is not None else add

    @staticmethod
    def split(spec: str) -> tuple[str, str | None]:
        """``name:arg`` or ``name=arg`` into (name, arg); a plain name gives (name, None)."""
        cuts = [i for i in (spec.find(":"), spec.find("=")) if i >= 0]
        if not cuts:
            return spec, None
        cut = min(cuts)
        return spec[:cut], spec[cut + 1:]

    def get(self, spec: str) -> T:
        """The entry for a name (an argument after ':' or '=' is ignored here); a clear error lists the known ones."""
        name, _ = self.split(spec)
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {spec!r}; known: {self.describe()}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, spec: str) -> bool:
        return self.split(spec)[0] in self._entries

    def describe(self, only: Callable[[T], bool] | None = None) -> str:
        """The names as a user writes them (with their argument hints), comma-separated."""
        return ", ".join(name + self._hints.get(name, "") for name, entry in self.items()
                         if only is None or only(entry))
