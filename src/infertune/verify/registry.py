"""The registry of verifiers by the names the command line uses (``builders`` fills it).

Each entry builds the verifier for a task from its argument, and says whether a sample's score depends on the
prompt's other samples (majority agreement does). That flag is the one source of truth for every place that must
treat such scores differently: scoring recomputes them when a run grows, evaluation notes that a Best-of-k from
n > k samples sees outside the k, and the planner leaves them out of Best-of-N strategies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from infertune.registry import Registry

if TYPE_CHECKING:
    from infertune.tasks import Task


@dataclass(frozen=True)
class VerifierKind:
    name: str
    build: Callable[["Task", str | None], object]
    compares_samples: bool
    needs_path: bool
    summary: str


VERIFIERS: Registry[VerifierKind] = Registry("verifier")


def register(name: str, *, compares_samples: bool = False, needs_path: bool = False, summary: str):
    """Register a builder ``build(task, argument) -> verifier`` under ``name``."""

    def decorate(build: Callable[["Task", str | None], object]):
        VERIFIERS.register(name, VerifierKind(name, build, compares_samples, needs_path, summary),
                           argument="=PATH" if needs_path else None)
        return build

    return decorate
