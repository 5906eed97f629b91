"""Verifiers: what Best-of-N selects by, computed without the answer key (oracle, agreement, reward models, the
policy's own confidence, infertune's small learned reward model). They consume tasks; tasks never import them.

By name, as the command line writes them: ``oracle``, ``agreement``, ``rm=PATH``, ``confidence=PATH``,
``p_true=PATH``, ``learned=PATH`` (``registry.VERIFIERS``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infertune.registry import Registry
from infertune.verify import builders  # noqa: F401 - registration
from infertune.verify.registry import VERIFIERS, VerifierKind

if TYPE_CHECKING:
    from infertune.tasks import Task


def compares_samples(name: str) -> bool:
    """Whether scores from the verifier (or score column) ``name`` depend on the prompt's other samples. Columns of
    unregistered names (user-written scores) are taken to score each sample on its own."""
    return name in VERIFIERS and VERIFIERS.get(name).compares_samples


def build_verifier(spec: str, task: "Task"):
    """A verifier from its command-line form, e.g. ``agreement`` or ``rm=PATH``."""
    kind = VERIFIERS.get(spec)
    _, argument = Registry.split(spec)
    if kind.needs_path and not argument:
        raise ValueError(f"verifier {spec!r} needs a model path: {kind.name}=PATH")
    return kind.build(task, argument)


def canonical_spec(spec: str) -> str:
    """A verifier spec with its model folder made absolute, so that two spellings of one verifier compare equal."""
    from pathlib import Path

    name, argument = Registry.split(spec)
    return f"{name}={Path(argument).resolve()}" if argument and Path(argument).exists() else spec


def describe_verifiers() -> str:
    """The verifiers' names as a user writes them, for help texts."""
    return VERIFIERS.describe()


__all__ = ["VERIFIERS", "VerifierKind", "build_verifier", "canonical_spec", "compares_samples", "describe_verifiers"]
