"""A task as configurations name it: its name and its options, and the one way to load it.

Every command that works on a task (sample, eval, score, train, the demo) composes this spec instead of restating
the two fields and the parsing of ``--task-option key=value``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from infertune.tasks.base import TASKS, Task, load


def parse_options(pairs: list[str]) -> dict:
    """key=value pairs; values are read as JSON when they parse, else kept as strings."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"task option {pair!r} is not key=value")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


@dataclass
class TaskSpec:
    """Which task, with which options."""

    # The package imports every built-in task before this module, so the registry is complete here.
    task: str = field(default="arith", metadata={"help": f"Task: {TASKS.describe()}."})
    task_option: list[str] = field(default_factory=list, metadata={
        "help": "Task option as key=value (JSON values allowed), repeatable, e.g. size=200."})

    def load_task(self) -> Task:
        return load(self.task, **parse_options(self.task_option))
