"""Where a completion's reasoning steps end: what a process reward model scores and what search expands.

A step format is a set of delimiters; a step runs up to and including the first delimiter after its start, and the
last step is whatever remains. Natural-language reasoning is split at blank lines; the compact arith style
(``3*(4+7)-9``) has no lines, so it is split after each operator (``3*`` ``(4+`` ``7)-`` ``9``): each step commits to
one more number and operator, which is what a prefix's chance of success depends on. A task names its format
(``Task.step_format``); search and the PRM ask for it by that name, so splitting at training and at search agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from infertune.registry import Registry


@dataclass(frozen=True)
class StepFormat:
    """Delimiters that end a step; ``split`` and ``prefixes`` are the only ways steps are cut."""

    name: str
    stops: tuple[str, ...]
    summary: str

    def split(self, text: str) -> list[str]:
        """Steps whose concatenation is ``text``; each but the last ends with a delimiter."""
        steps, start = [], 0
        while start < len(text):
            end = self.step_end(text, start)
            if end is None:
                steps.append(text[start:])
                break
            steps.append(text[start:end])
            start = end
        return steps

    def step_end(self, text: str, start: int = 0) -> int | None:
        """Offset just past the first delimiter that starts at or after ``start`` (None when there is none): where
        a sampler told to stop at the delimiters stops, so a generated step and a split step agree."""
        ends = [at + len(stop) for stop in self.stops if (at := text.find(stop, start)) >= 0]
        return min(ends) if ends else None

    def prefixes(self, text: str) -> list[str]:
        """The text up to the end of each step: the states a PRM scores (the last one is the whole text)."""
        out, done = [], ""
        for step in self.split(text):
            done += step
            out.append(done)
        return out


STEP_FORMATS: Registry[StepFormat] = Registry("step format")
STEP_FORMATS.register("blank-line", StepFormat("blank-line", ("\n\n",), "a blank line ends a step (natural-language "
                                                                     "reasoning, chat models)"))
STEP_FORMATS.register("line", StepFormat("line", ("\n",), "every line is a step"))
STEP_FORMATS.register("operators", StepFormat("operators", ("+", "-", "*", "/"),
                                              "a step ends after each arithmetic operator (compact expressions)"))


def step_format(name: str) -> StepFormat:
    return STEP_FORMATS.get(name)
