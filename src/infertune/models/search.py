"""Search against a process reward model (Snell et al. 2024): beam search and lookahead, as samplers.

Beam search with budget N and width M: sample N first steps; keep the N/M partial answers the PRM values highest;
give each M continuations (one step each); repeat until no partial answer is left, or until answers have
``max_steps`` steps (then the unfinished ones are answers as they stand). Finished answers are collected as they appear, and the final answer is
chosen among them by a verifier's score of the whole answer (the PRM's aggregate by default, or an outcome
verifier): the best one, or (``weighted``) the answer whose candidates' scores sum highest (Best-of-N weighted). Lookahead search is beam search in which a partial answer
is valued by the PRM at the end of a greedy (temperature 0) rollout of k more steps instead of at its own end.

Compute is counted in generated tokens: every step sampled, including candidates that are dropped or duplicates,
and every rollout token. PRM evaluations are counted separately (``SearchResult.prm_calls``: states and answers
scored) and not charged to the budget, as verifier scoring is not charged to Best-of-N either. Re-reading (prefilling)
a kept partial answer to extend it is not charged either: the budget counts generated tokens, as Snell et al. do,
and an engine with a prefix cache (vLLM) does not recompute it; the transformers sampler here does, once per kept
state. Revisions are charged their context of earlier attempts (see ``models.revise``), so search is the cheaper
of the two on this accounting. Partial answers of one prompt with the same text are one state:
they are kept once, so a step never spends M samples twice on the same prefix.

Randomness: round 1 draws sample indices run·N .. run·N + N − 1 from the prompt, every later expansion draws indices
run·M .. run·M + M − 1 from the prompt followed by the partial answer. Each state's samples depend only on (seed,
text, index), so a run is reproducible and runs with different ``run`` are independent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol, Sequence

import numpy as np

from infertune.models.base import SamplingParams
from infertune.tasks.steps import StepFormat


@dataclass(frozen=True)
class Step:
    text: str  # the step's text, its delimiter included
    tokens: int  # tokens generated to produce it
    finished: bool  # the model ended the answer here


class StepSampler(Protocol):
    """Draws n next steps for every prompt (a prompt already holds the question and the partial answer)."""

    def steps(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Step]]: ...


class HFStepSampler:
    """Next steps from any sampler that returns token ids (``HFSampler``): sample with the format's delimiters as
    stop strings, then keep the delimiter as part of the step (the sampler cuts it off)."""

    def __init__(self, sampler, fmt: StepFormat) -> None:
        self.sampler, self.format = sampler, fmt
        self.eos_ids = set(getattr(sampler, "eos_ids", []))

    def steps(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Step]]:
        out = self.sampler.sample(list(prompts), replace(params, stop=list(self.format.stops)))
        return [[self._step(c) for c in row] for row in out]

    def _step(self, c) -> Step:
        tokens = c.num_tokens
        if c.finish_reason != "stop":
            return Step(c.text, tokens, False)  # the step hit max_new_tokens: a chunk, the answer goes on
        if c.token_ids and c.token_ids[-1] in self.eos_ids:
            return Step(c.text, tokens, True)
        full = self.sampler.tokenizer.decode(c.token_ids, skip_special_tokens=True)
        end = self.format.step_end(full)
        return Step(full[:end] if end is not None else c.text, tokens, False)


@dataclass(frozen=True)
class SearchConfig:
    """One search strategy."""

    n: int  # N: steps sampled per round (the budget in samples)
    width: int = 4  # M: continuations per kept partial answer; N/M are kept
    lookahead: int = 0  # k: greedy rollout steps that value a partial answer (0: beam search)
    temperature: float = 1.0
    max_steps: int = 16
    max_step_tokens: int = 64
    select: str = "weighted"  # final answer: "best" PRM score, or "weighted" (scores summed per answer)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.width < 1 or self.n % self.width:
            raise ValueError(f"search needs N a multiple of the width M, got N={self.n}, M={self.width}")
        if self.lookahead < 0 or self.max_steps < 1 or self.max_step_tokens < 1:
            raise ValueError("lookahead must be >= 0, max_steps and max_step_tokens >= 1")
        if self.select not in ("best", "weighted"):
            raise ValueError(f"select must be best or weighted, got {self.select!r}")

    @property
    def method(self) -> str:
        return "lookahead" if self.lookahead else "beam"


@dataclass
class SearchResult:
    text: str  # the chosen answer
    score: float  # its score by the final verifier (the PRM's aggregate unless another is given)
    tokens: int  # generated tokens charged, rollouts included
    rollout_tokens: int  # of which lookahead rollouts
    answers: int  # finished answers it chose among
    rounds: int  # expansion rounds run
    prm_calls: int = 0  # states and answers scored (by the PRM, and by the final verifier): not charged to budgets


def search(problems: Sequence, prompts: Sequence[str], sampler: StepSampler, prm, config: SearchConfig, *,
           run: int = 0, answer: Callable[[str], str | None] | None = None,
           final: Callable | None = None) -> list[SearchResult]:
    """Run the search once per problem (all problems batched together). ``prompts`` are the texts completions
    continue (the rendered questions); ``prm`` has ``score_prefixes(problems, prefixes)`` and scores whole answers
    when called; ``final`` (default: the PRM) scores the finished answers the final choice is made among;
    ``answer`` maps an answer to what weighted selection counts as the same answer."""
    if len(problems) != len(prompts):
        raise ValueError(f"{len(problems)} problems but {len(prompts)} prompts")
    count = len(problems)
    tokens = np.zeros(count, dtype=np.int64)
    rollout_tokens = np.zeros(count, dtype=np.int64)
    prm_calls = np.zeros(count, dtype=np.int64)
    params = SamplingParams(n=config.n, temperature=config.temperature, max_new_tokens=config.max_step_tokens,
                            seed=config.seed, start_index=run * config.n)
    first = sampler.steps(list(prompts), params)
    # Candidates per problem: (partial answer text, finished).
    candidates = [[(s.text, s.finished) for s in row] for row in first]
    tokens += [sum(s.tokens for s in row) for row in first]
    done: list[list[str]] = [[] for _ in range(count)]
    keep, rounds = config.n // config.width, 0
    for depth in range(1, config.max_steps + 1):
        if depth == config.max_steps:  # out of rounds: unfinished answers stand as they are
            for i, row in enumerate(candidates):
                done[i].extend(text for text, _ in row)
            break
        active: list[list[str]] = []
        for i, row in enumerate(candidates):
            done[i].extend(text for text, finished in row if finished)
            active.append(list(dict.fromkeys(text for text, finished in row if not finished)))
        flat = [(i, text) for i, row in enumerate(active) for text in row]
        if not flat:
            break
        rounds += 1
        prm_calls += [len(row) for row in active]
        if config.lookahead:
            values, spent = _lookahead_values(problems, prompts, sampler, prm, flat, config)
            tokens += spent
            rollout_tokens += spent
        else:
            values = prm.score_prefixes([problems[i] for i, _ in flat], [t for _, t in flat])
        kept: list[tuple[int, str]] = []
        at = 0
        for i, row in enumerate(active):
            v = values[at : at + len(row)]
            at += len(row)
            order = np.argsort(-v, kind="stable")[:keep]
            kept.extend((i, row[j]) for j in order)
        expand = replace(params, n=config.width, start_index=run * config.width)
        out = sampler.steps([prompts[i] + text for i, text in kept], expand)
        candidates = [[] for _ in range(count)]
        for (i, text), row in zip(kept, out):
            candidates[i].extend((text + s.text, s.finished) for s in row)
            tokens[i] += sum(s.tokens for s in row)
    prm_calls += [len(row) for row in done]
    return _select(problems, done, final or prm, config, answer, tokens, rollout_tokens, rounds, prm_calls)


def _lookahead_values(problems, prompts, sampler, prm, flat, config: SearchConfig):
    """PRM values at the end of greedy k-step rollouts from each partial answer, and the tokens they cost."""
    spent = np.zeros(len(problems), dtype=np.int64)
    ends = [text for _, text in flat]
    live = list(range(len(flat)))
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=config.max_step_tokens, seed=config.seed)
    for _ in range(config.lookahead):
        if not live:
            break
        out = sampler.steps([prompts[flat[j][0]] + ends[j] for j in live], greedy)
        still = []
        for j, row in zip(live, out):
            step = row[0]
            ends[j] += step.text
            spent[flat[j][0]] += step.tokens
            if not step.finished:
                still.append(j)
        live = still
    return prm.score_prefixes([problems[i] for i, _ in flat], ends), spent


def _select(problems, done, verifier, config: SearchConfig, answer, tokens, rollout_tokens,
            rounds, prm_calls) -> list[SearchResult]:
    """The final answer of each problem among its finished candidates, by the verifier's score of whole answers."""
    flat_p = [problems[i] for i, row in enumerate(done) for _ in row]
    flat_t = [t for row in done for t in row]
    scores = np.asarray(verifier(flat_p, flat_t), dtype=np.float64) if flat_t else np.zeros(0)
    results, at = [], 0
    for i, row in enumerate(done):
        s = scores[at : at + len(row)]
        at += len(row)
        if not row:
            results.append(SearchResult("", 0.0, int(tokens[i]), int(rollout_tokens[i]), 0, rounds,
                                        int(prm_calls[i])))
            continue
        pick = pick_weighted(row, s, answer) if config.select == "weighted" else int(np.argmax(s))
        results.append(SearchResult(row[pick], float(s[pick]), int(tokens[i]), int(rollout_tokens[i]), len(row),
                                    rounds, int(prm_calls[i])))
    return results


def pick_weighted(texts: Sequence[str], scores: np.ndarray, answer: Callable[[str], str | None] | None) -> int:
    """Index of a candidate of the answer whose candidates' scores sum highest (the first such candidate; the
    best-scored one when no candidate gives an answer)."""
    key = answer or (lambda text: text)
    totals: dict[str, float] = {}
    first: dict[str, int] = {}
    for j, text in enumerate(texts):
        a = key(text)
        if a is None:
            continue
        totals[a] = totals.get(a, 0.0) + float(scores[j])
        first.setdefault(a, j)
    if not totals:
        return int(np.argmax(scores))
    best = max(totals.values())
    return min(first[a] for a, total in totals.items() if total == best)
