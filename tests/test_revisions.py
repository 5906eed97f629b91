"""Sequential revisions: training contexts never hold the reference answer, chains see only their own attempts,
token accounting against hand counts, and revision strategies valued exactly (brute force over chain subsets)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertune.models.base import Completion
from infertune.models.revise import RevisionConfig, revision_chains
from infertune.tasks.base import Problem
from infertune.tasks.revisions import RevisionTask, revision_examples
from toy_policy import ToySampler, ToyTask

REFERENCE = "REFERENCE-SENTINEL"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["1+1+0", "0+2+0", "2+2+2", "0+0+0", REFERENCE, "", "1+0+1"]),
                          st.booleans()), min_size=1, max_size=12),
       st.integers(0, 10_000), st.integers(1, 4))
def test_revision_contexts_never_contain_the_reference_answer(pairs, seed, max_context):
    """Contexts hold only attempts the checker rejected; the reference solution is correct, so it is never among
    them, and targets are the policy's own correct attempts."""
    task = ToyTask(targets=(2,))
    problem = task.problems()[0]
    attempts = [a for a, _ in pairs]
    rewards = [task.reward(problem, a) if a != REFERENCE else 1.0 for a in attempts]
    examples = revision_examples(problem, attempts, rewards, np.random.default_rng(seed), max_context=max_context)
    correct = {a for a, r in zip(attempts, rewards) if r > 0.5}
    wrong = {a for a, r in zip(attempts, rewards) if r <= 0.5}
    assert bool(examples) == bool(correct and wrong - {""})
    revision = RevisionTask(task, examples)
    for ex, p in zip(examples, revision.problems()):
        assert 1 <= len(ex.attempts) <= max_context and len(set(ex.attempts)) == len(ex.attempts)
        assert all(a in wrong for a in ex.attempts) and REFERENCE not in ex.attempts
        assert ex.target in correct
        assert REFERENCE not in p.prompt and p.reference == ex.target
        assert p.prompt == problem.prompt + "".join(a + "|" for a in ex.attempts)


def test_revision_task_rewards_are_the_original_questions():
    task = ToyTask(targets=(2,))
    problem = task.problems()[0]
    [ex] = revision_examples(problem, ["0+0+0", "1+1+0"], [0.0, 1.0], np.random.default_rng(0), per_problem=1)
    revision = RevisionTask(task, [ex])
    p = revision.problems()[0]
    assert p.prompt == "sum=2:0+0+0|" and revision.reward(p, "1+0+1") == 1.0 and revision.reward(p, "0+0+1") == 0.0


class FixedSampler:
    """Writes the same text for every prompt and records the prompts it was given."""

    def __init__(self, text: str) -> None:
        self.text, self.prompts = text, []

    def sample(self, prompts, params):
        self.prompts.extend(prompts)
        return [[Completion(self.text, list(range(len(self.text) + 1)), [0.0] * (len(self.text) + 1), "stop",
                            params.start_index + j) for j in range(params.n)] for _ in prompts]


def test_revision_tokens_match_a_hand_count():
    """Policy attempts write 'ab' (3 tokens with the end token), revisions 'cd' (3 tokens); contexts hold the
    window's attempts each followed by '|', one token per character. Window 2, four attempts: 3, 3 + 3 ('ab|'),
    3 + 6 ('ab|cd|'), 3 + 6 ('cd|cd|') = 27 tokens per chain."""
    task = ToyTask(targets=(2,))
    policy, reviser = FixedSampler("ab"), FixedSampler("cd")
    chains = revision_chains(task.problems(), policy, reviser, RevisionConfig(chains=2, length=4, window=2),
                             render=lambda p: p.prompt,
                             render_revision=lambda p, attempts: task.revision_prompt(p, attempts),
                             count_tokens=len)
    for chain in chains[0]:
        assert [a.charged for a in chain] == [3, 6, 9, 9]
        assert [a.context for a in chain] == ["sum=2:", "sum=2:ab|", "sum=2:ab|cd|", "sum=2:cd|cd|"]
    assert sum(a.charged for chain in chains[0] for a in chain) == 2 * 27


def test_chains_see_only_their_own_attempts_and_never_the_reference():
    task = ToyTask(targets=(1, 2, 3))
    reviser = ToySampler()
    chains = revision_chains(task.problems(), ToySampler(), reviser, RevisionConfig(chains=3, length=3, window=2,
                                                                                   seed=4),
                             render=lambda p: p.prompt,
                             render_revision=lambda p, attempts: task.revision_prompt(p, attempts),
                             count_tokens=len)
    assert reviser.seen and all(REFERENCE not in prompt for prompt in reviser.seen)
    for p, row in zip(task.problems(), chains):
        for chain in row:
            for i, a in enumerate(chain[1:], 1):
                shown = [x.text for x in chain[max(0, i - 2) : i]]
                assert a.context == task.revision_prompt(p, shown)


def _revision_samples(rewards, scores, answers, tokens):
    from infertune.store import scored_from_arrays

    count = rewards.shape[0]
    flat = lambda x: x.reshape(count, -1)  # noqa: E731
    return scored_from_arrays([f"p{i}" for i in range(count)], flat(rewards), flat(answers).astype(object),
                              {"v": flat(scores)}, tokens=flat(tokens))


def test_revision_strategies_equal_brute_force_over_chain_subsets():
    """The value of (C chains, L attempts, rule) is the mean, over every C-subset of the C_max chains, of what the
    rule picks: by a verifier, each chain offers its best-scored attempt (ties within a chain: their mean reward)
    and the best chain wins (ties among chains: each equally likely), which is Best-of-N over all C·L attempts
    whenever scores do not tie; by majority, a (weighted) vote of the chains' last attempts."""
    from infertune.evaluation import selected_accuracy
    from infertune.planning import ChainLayout, revision_table

    rng = np.random.default_rng(3)
    count, c_max, l_max = 4, 4, 3
    rewards = rng.integers(0, 2, (count, c_max, l_max)).astype(float)
    scores = rng.integers(0, 4, (count, c_max, l_max)) / 4.0  # ties on purpose
    answers = np.where(rewards > 0, "right", rng.choice(["w1", "w2"], rewards.shape)).astype(object)
    tokens = rng.integers(1, 9, (count, c_max, l_max))
    table = revision_table(_revision_samples(rewards, scores, answers, tokens),
                           ChainLayout(c_max, l_max, 1.0, window=2), unit="tokens")
    assert {(s.chains, s.attempts) for s in table.strategies} == {(c, n) for c in range(1, 5) for n in (2, 3)}
    for j, s in enumerate(table.strategies):
        length = s.attempts
        for p in range(count):
            picks, costs = [], []
            for subset in itertools.combinations(range(c_max), s.chains):
                if s.rule.startswith("bon"):
                    offers = []
                    for c in subset:
                        top = scores[p, c, :length].max()
                        offers.append((top, rewards[p, c, :length][scores[p, c, :length] == top].mean()))
                    best = max(top for top, _ in offers)
                    picks.append(np.mean([r for top, r in offers if top == best]))
                else:
                    cells = [(c, length - 1) for c in subset]
                    acc, _ = selected_accuracy(s.rule, [rewards[p][c] for c in cells],
                                               [answers[p][c] for c in cells], [scores[p][c] for c in cells])
                    picks.append(acc)
                costs.append(sum(tokens[p, c, :length].sum() for c in subset))
            assert table.values[p, j] == pytest.approx(np.mean(picks), abs=1e-9), (s, p)
            assert table.costs[p, j] == pytest.approx(np.mean(costs))


def test_train_revision_model_runs_the_trainer_on_the_examples(tmp_path):
    from infertune.models.tiny import TinyConfig, tiny_model
    from infertune.train.revisions import RevisionTrainConfig, train_revision_model

    task = ToyTask(targets=(2, 3))
    examples = []
    for p in task.problems():
        examples += revision_examples(p, ["0+0+0", "1+1+0", "1+1+1", "2+2+2"],
                                      [task.reward(p, a) for a in ["0+0+0", "1+1+0", "1+1+1", "2+2+2"]],
                                      np.random.default_rng(0))
    model, tok = tiny_model(TinyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    path = train_revision_model(task, examples, model, tok, RevisionTrainConfig(steps=3, batch=4), tmp_path)
    assert (path / "config.json").exists() and (tmp_path / "run" / "train_log.csv").exists()


def test_test_time_revision_contexts_never_show_the_reference_even_to_a_renderer_that_shows_everything():
    """The planner's revision runs render contexts through ``runs.revision_context``; a renderer that prints every
    field of the problem it is given, and a reviser that echoes its whole context, still never show the reference
    answer or the problem's metadata."""
    from dataclasses import asdict

    from infertune.models.base import Completion
    from infertune.planning.runs import revision_context

    task = ToyTask(targets=(2,))
    base = task.problems()[0]
    problem = Problem(base.id, base.prompt, REFERENCE, base.target, metadata={"solution": REFERENCE},
                      system="be brief")

    class Echo:
        def sample(self, prompts, params):
            return [[Completion(p, [], [], "stop", index=params.start_index + j) for j in range(params.n)]
                    for p in prompts]

    chains = revision_chains([problem], Echo(), Echo(), RevisionConfig(chains=2, length=3, window=2),
                             render=lambda p: p.prompt,
                             render_revision=lambda p, a: revision_context(task, lambda q: repr(asdict(q)), p, a),
                             count_tokens=len)
    attempts = [a for chain in chains[0] for a in chain]
    assert len(attempts) == 6 and any("be brief" in a.context for a in attempts)  # the renderer saw the problem
    assert all(REFERENCE not in a.context and REFERENCE not in a.text for a in attempts)
