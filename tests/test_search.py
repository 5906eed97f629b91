"""Search against a PRM: beam search of width N and one step is Best-of-N; token accounting against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from infertune.models.search import HFStepSampler, SearchConfig, pick_weighted, search
from infertune.tasks.steps import StepFormat
from toy_policy import ToySampler, ToyTask


class DigitPRM:
    """Values a partial answer by its digit sum (prefers large digits); scores whole answers the same way."""

    name = "prm"

    def __init__(self) -> None:
        self.calls = 0

    def score_prefixes(self, problems, prefixes):
        self.calls += len(prefixes)
        return np.array([sum(int(c) for c in x if c.isdigit()) / 10 for x in prefixes])

    def __call__(self, problems, completions):
        return self.score_prefixes(problems, completions)


class IndexedSteps:
    """Step i of every call is the digit (index + depth) % 10 followed by '+', two tokens each (digit and '+', or
    digit and the end token on the third step): every candidate of a round is distinct, so the hand count is
    exact."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, float]] = []

    def steps(self, prompts, params):
        self.calls.append((len(prompts), params.n, params.temperature))
        out = []
        for prompt in prompts:
            depth = sum(ch.isdigit() for ch in prompt.split(":", 1)[1])
            last = depth == 2
            out.append([_step((params.start_index + j + depth) % 10, last) for j in range(params.n)])
        return out


def _step(digit, last):
    from infertune.models.search import Step

    return Step(f"{digit}" + ("" if last else "+"), 2, last)


def test_beam_search_tokens_match_a_hand_count():
    """N = 4, M = 2, answers of three steps of two tokens: round 1 samples 4 first steps (8 tokens), rounds 2 and 3
    expand N/M = 2 kept beams by M = 2 each (8 tokens each): 24 tokens, no rollouts."""
    task = ToyTask(targets=(3,))
    sampler = IndexedSteps()
    prm = DigitPRM()
    [result] = search(task.problems(), ["sum=3:"], sampler, prm, SearchConfig(n=4, width=2, select="best"))
    assert result.tokens == 24 and result.rollout_tokens == 0 and result.rounds == 2
    assert [(n, k) for n, k, _ in sampler.calls] == [(1, 4), (2, 2), (2, 2)]
    # Round 1 writes 0+ 1+ 2+ 3+ and keeps 3+ and 2+; their continuations (digits 1, 2 at depth 1) give 3+1+ 3+2+
    # 2+1+ 2+2+, of which 3+2+ and 3+1+ are kept (a tie goes to the first); depth 2 adds digits 2 or 3.
    assert result.answers == 4 and result.text == "3+2+3"


def test_lookahead_tokens_include_the_rollouts():
    """Lookahead k = 1 rolls each unfinished candidate out one greedy step (2 tokens) before valuing it: 4
    candidates after round 1 and 4 after round 2, so 16 rollout tokens on top of the 24 of the search itself."""
    task = ToyTask(targets=(3,))
    sampler = IndexedSteps()
    [result] = search(task.problems(), ["sum=3:"], sampler, DigitPRM(),
                      SearchConfig(n=4, width=2, lookahead=1, select="best"))
    assert result.tokens == 40 and result.rollout_tokens == 16
    assert [t for _, _, t in sampler.calls].count(0.0) == 2  # two rounds of greedy rollouts


def test_runs_are_independent_and_reproducible():
    task = ToyTask(targets=(2, 3))
    config = SearchConfig(n=4, width=2, select="weighted")
    first = search(task.problems(), ["sum=2:", "sum=3:"], ToySampler(), DigitPRM(), config, run=0,
                   answer=task.extract)
    again = search(task.problems(), ["sum=2:", "sum=3:"], ToySampler(), DigitPRM(), config, run=0,
                   answer=task.extract)
    assert [r.text for r in first] == [r.text for r in again]
    sampler = ToySampler()
    search(task.problems()[:1], ["sum=2:"], sampler, DigitPRM(), config, run=1)
    assert sampler.seen[0] == "sum=2:"  # run 1 draws other indices of the same prompt


def test_duplicate_partial_answers_are_expanded_once():
    class Same:
        def steps(self, prompts, params):
            from infertune.models.search import Step

            depth = [p.count("+") for p in prompts]
            return [[Step("1" if d == 2 else "1+", 2, d == 2)] * params.n for d in depth]

    task = ToyTask(targets=(3,))
    [result] = search(task.problems(), ["sum=3:"], Same(), DigitPRM(), SearchConfig(n=4, width=2))
    # Round 1: four identical "1+" (8 tokens) are one state, expanded once by M = 2 (4 tokens), twice more.
    assert result.tokens == 8 + 4 + 4 and result.text == "1+1+1"


def test_weighted_pick_sums_scores_per_answer():
    texts = ["a", "b", "b", "c"]
    assert pick_weighted(texts, np.array([0.9, 0.5, 0.5, 0.1]), None) == 1
    assert pick_weighted(texts, np.array([0.9, 0.4, 0.4, 0.1]), None) == 0
    assert pick_weighted(["x", "y"], np.array([0.2, 0.7]), lambda t: None) == 1


@pytest.mark.parametrize("select, rule", [("best", "bon:prm"), ("weighted", "wmaj:prm")])
def test_beam_search_of_width_n_and_one_step_is_best_of_n(select, rule):
    """With M = N one partial answer is kept and expanded N ways; when an answer is a single step (here: at most
    one step, and a delimiter the model cannot write), round 1's N samples are the answers, so beam search picks what Best-of-N by the PRM (weighted: weighted majority) picks
    from the same N samples, at the same token cost."""
    from transformers import LlamaForSequenceClassification

    from infertune.evaluation import selected_accuracy
    from infertune.models.base import SamplingParams
    from infertune.models.hf import HFSampler
    from infertune.models.tiny import TinyConfig, build_tiny, char_tokenizer, tiny_model
    from infertune.tasks import load
    from infertune.verify.prm import ProcessRewardModel

    model, tok = tiny_model(TinyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64, seed=3))
    sampler = HFSampler(model, tok)
    rtok = char_tokenizer()
    rtok.padding_side = "right"
    prm = ProcessRewardModel(build_tiny(LlamaForSequenceClassification, TinyConfig(hidden_size=32, layers=1, heads=2,
                                                                                   intermediate_size=64, seed=5),
                                        rtok, num_labels=1), rtok, steps="operators")
    task = load("arith", size=20)
    problems = task.problems()[:3]
    one_step = StepFormat("whole", ("\u00a7",), "a delimiter the character model cannot write")
    n = 8
    results = search(problems, [p.prompt for p in problems], HFStepSampler(sampler, one_step), prm,
                     SearchConfig(n=n, width=n, temperature=1.0, max_steps=1, max_step_tokens=12, select=select,
                                   seed=7),
                     answer=lambda text: text)  # each text its own answer, as the votes below count them
    plain = sampler.sample([p.prompt for p in problems], SamplingParams(n=n, temperature=1.0, max_new_tokens=12,
                                                                        seed=7))
    for p, r, row in zip(problems, results, plain):
        texts = [c.text for c in row]
        scores = prm([p] * n, texts)
        rewards = task.rewards([p] * n, texts)
        _, pick = selected_accuracy(rule, rewards, texts, scores)
        assert r.text == texts[pick]
        assert r.tokens == sum(c.num_tokens for c in row) and r.answers == n and r.rounds == 0


def test_with_an_exact_prm_beam_search_beats_best_of_n_at_the_same_tokens():
    """The mechanism Snell et al. rely on: a dense verifier that knows which partial answers can still succeed lets
    search spend its samples on them. On the toy task with target 6 (only 2+2+2 works: probability 0.008 per
    sample), Best-of-8 even with a perfect final verifier succeeds with probability 1 − 0.992^8 ≈ 0.062; beam search
    with N = 8, M = 4 and the exact P(correct | prefix) as its PRM spends the same 48 tokens and succeeds far more
    often. (With the learned PRM of the embedded default, whose early steps barely rank, it does not: README.)"""
    from toy_policy import digits_of, exact_success

    class ExactPRM:
        name = "prm"

        def score_prefixes(self, problems, prefixes):
            return np.array([exact_success(p.target, digits_of(x)) if len(digits_of(x)) < 3
                             else float(sum(digits_of(x)) == p.target) for p, x in zip(problems, prefixes)])

        def __call__(self, problems, completions):
            return self.score_prefixes(problems, completions)

    task = ToyTask(targets=(6,))
    runs = 300
    results = [search(task.problems(), ["sum=6:"], ToySampler(), ExactPRM(), SearchConfig(n=8, width=4,
                                                                                          select="best"), run=r)[0]
               for r in range(runs)]
    success = np.mean([task.reward(task.problems()[0], r.text) for r in results])
    best_of_8 = 1 - (1 - 0.2**3) ** 8
    # 8 samples of 'd+d+d' and the end token cost 8 x 6 = 48; search spends as much, less when a round has fewer
    # than N/M distinct partial answers to keep.
    assert max(r.tokens for r in results) == 48 and min(r.tokens for r in results) >= 32
    assert success > 3 * best_of_8 + 3 * np.sqrt(success * (1 - success) / runs)


class FinishedFirstSteps:
    """Every sampled step ends its answer: the digit (index) % 10, two tokens."""

    def steps(self, prompts, params):
        from infertune.models.search import Step

        return [[Step(f"{(params.start_index + j) % 10}", 2, True) for j in range(params.n)] for _ in prompts]


def test_beam_search_whose_answers_end_in_one_step_is_best_of_n_through_the_search_loop():
    """max_steps > 1, so the loop itself (not the out-of-rounds exit) finds nothing left to expand after round 1:
    the answers are round 1's N samples and the pick is Best-of-N's by the PRM, at N samples' tokens."""
    task = ToyTask(targets=(3,))
    prm = DigitPRM()
    [result] = search(task.problems(), ["sum=3:"], FinishedFirstSteps(), prm,
                      SearchConfig(n=6, width=6, max_steps=4, select="best"))
    assert result.text == "5" and result.rounds == 0 and result.answers == 6 and result.tokens == 12
    assert result.prm_calls == 6  # the final scoring of the six answers, nothing else


def test_beam_search_of_width_n_keeps_one_beam_and_expands_it_n_ways():
    """N = M = 4 with three-step answers: each later round extends the single best partial answer 4 ways."""
    task = ToyTask(targets=(3,))
    sampler = IndexedSteps()
    [result] = search(task.problems(), ["sum=3:"], sampler, DigitPRM(), SearchConfig(n=4, width=4, select="best"))
    assert sampler.calls[0][:2] == (1, 4) and [c[:2] for c in sampler.calls[1:]] == [(1, 4), (1, 4)]
    assert result.rounds == 2 and result.tokens == 3 * 4 * 2
    assert result.prm_calls == 4 + 4 + 4  # 4 states valued in each of two rounds, 4 answers scored at the end
