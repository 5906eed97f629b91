"""Any reasoning-gym generator as a task; only a score of 1.0 counts as correct (a wrong answer can score 0.01)."""

from __future__ import annotations

import re

from infertune.tasks.base import Problem, Task, register
from infertune.tasks.grading.answers import extract_answer

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
INSTRUCTION = "Give only your final answer inside <answer></answer> tags, for example <answer>42</answer>."


@register("reasoning-gym", argument=":<dataset>")
class ReasoningGymTask(Task):
    def __init__(self, dataset: str, size: int = 100, seed: int = 0, **config) -> None:
        import reasoning_gym

        if not dataset:
            raise ValueError("reasoning-gym needs a dataset name, e.g. reasoning-gym:basic_arithmetic")
        try:
            self.dataset = reasoning_gym.create_dataset(dataset, size=size, seed=seed, **config)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"reasoning-gym:{dataset}: {exc}") from exc
        self.name = f"reasoning-gym:{dataset}"
        self._spec = {"name": self.name, "size": size, "seed": seed, **config}
        self._problems: list[Problem] | None = None

    def problems(self) -> list[Problem]:
        if self._problems is None:
            self._problems = [
                Problem(id=f"{self.name}-{i:05d}", prompt=f"{entry['question']}\n{INSTRUCTION}",
                        reference=str(entry["answer"]), target=i, metadata={"entry_index": i})
                for i, entry in enumerate(self.dataset)
            ]
        return self._problems

    def extract(self, completion: str) -> str | None:
        tagged = _ANSWER_TAG.findall(completion or "")
        if tagged:
            return tagged[-1].strip()
        return extract_answer(completion)

    def reward(self, problem: Problem, completion: str) -> float:
        answer = self.extract(completion)
        if answer is None:
            return 0.0
        score = self.dataset.score_answer(answer=answer, entry=self.dataset[problem.target])
        return 1.0 if score == 1.0 else 0.0

    def spec(self) -> dict:
        return dict(self._spec)
