"""Tasks: problems with prompts and references, and the reward each completion earns.

``load(name, **options)`` gives any registered task: ``arith`` (procedural, the embedded default), ``humaneval``,
``champ``, ``reasoning-gym:<dataset>``, ``jsonl:<path>``, ``parquet:<path>``.
"""

from infertune.tasks import arith, champ, forms, humaneval, reasoning_gym_task, user_data  # noqa: F401 - registration
from infertune.tasks.base import TASKS, Problem, Task, available, load, register
from infertune.tasks.spec import TaskSpec, parse_options
from infertune.tasks.user_data import DataError

__all__ = ["DataError", "Problem", "TASKS", "Task", "TaskSpec", "available", "load", "parse_options", "register"]
