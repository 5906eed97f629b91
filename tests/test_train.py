"""The training loop: exact resume, every objective runs, LoRA trains only its adapters, and learning happens."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from infertune.train import TrainConfig, Trainer, kl_coefficient, split_problems
from infertune import tasks

EASY = ["size=1200", "numbers=3", "max_number=9", "max_target=60"]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny model taught arith by supervised learning for a few seconds: some samples are right."""
    out = tmp_path_factory.mktemp("base")
    trainer = Trainer(TrainConfig(task_option=EASY, objective="sft", steps=400, batch_prompts=64, lr=3e-3,
                                  eval_prompts=100, n=1, k=1, max_new_tokens=12, out=str(out / "run"),
                                  checkpoint_every=0))
    trainer.run()
    trainer.save_model(out / "model")
    return str(out / "model")


def _config(base_model, out, **overrides):
    values = dict(task_option=EASY, model=base_model, objective="bon-exact", steps=6, batch_prompts=4, n=8, k=4,
                  lr=1e-4, eval_prompts=100, eval_n=8, max_new_tokens=12, out=str(out), checkpoint_every=3,
                  kl_start=0.5, kl_end=0.1)
    values.update(overrides)
    return TrainConfig(**values)


class Crash(Exception):
    pass


def test_resume_reproduces_the_uninterrupted_loss_trajectory(base_model, tmp_path):
    whole = Trainer(_config(base_model, tmp_path / "whole")).run()

    def crash_at_step_5(row):
        if row["step"] == 5:  # after the step-3 checkpoint, with steps 4 and 5 logged but not checkpointed
            raise Crash

    with pytest.raises(Crash):
        Trainer(_config(base_model, tmp_path / "resumed")).run(progress=crash_at_step_5)
    rest = Trainer(_config(base_model, tmp_path / "resumed")).run()
    assert [r["step"] for r in rest] == [4, 5, 6]
    for a, b in zip(whole[3:], rest):
        assert a["reward"] == b["reward"] and a["sequences"] == b["sequences"]
        assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] and a["kl"] == b["kl"]
    assert any(r["loss"] != 0 for r in whole) and any(r["kl"] > 0 for r in whole)
    with open(tmp_path / "resumed" / "train_log.csv") as fh:
        logged = list(csv.DictReader(fh))
    assert [int(r["step"]) for r in logged] == list(range(1, 7))
    assert [float(r["loss"]) for r in logged] == pytest.approx([r["loss"] for r in whole], rel=1e-12)
    with pytest.raises(ValueError, match="different configuration"):
        Trainer(_config(base_model, tmp_path / "resumed", lr=2e-4)).run()
    # A checkpoint written before a field existed resumes with that field at its default, and only at its default.
    folder = tmp_path / "resumed" / "checkpoints"
    saved_path = folder / (folder / "latest").read_text().strip() / "config.json"
    saved = json.loads(saved_path.read_text())
    del saved["history_decay"]
    saved_path.write_text(json.dumps(saved))
    assert Trainer(_config(base_model, tmp_path / "resumed")).load_checkpoint()
    with pytest.raises(ValueError, match="different configuration"):
        Trainer(_config(base_model, tmp_path / "resumed", allocation="knapsack", history_decay=0.5)).load_checkpoint()
    # A knapsack run saved before the field existed kept the latest visit only (the default then): it resumes as
    # history_decay 0, not at today's default.
    saved_path.write_text(json.dumps({**saved, "allocation": "knapsack"}))
    legacy = _config(base_model, tmp_path / "resumed", allocation="knapsack", history_decay=0.0)
    assert Trainer(legacy).load_checkpoint()
    with pytest.raises(ValueError, match="history_decay: saved 0.0, now 1.0"):
        Trainer(_config(base_model, tmp_path / "resumed", allocation="knapsack")).load_checkpoint()
    # A uniform run saved while the default was 0 (the field written out) resumes: the decay is unused there.
    saved_path.write_text(json.dumps({**saved, "history_decay": 0.0}))
    assert Trainer(_config(base_model, tmp_path / "resumed")).load_checkpoint()


@pytest.mark.parametrize("objective, verifier, k", [
    ("rloo", "reward", 4), ("grpo", "reward", 4), ("dr-grpo", "reward", 4), ("star", "reward", 4),
    ("bon-rl-v", "confidence", 4), ("bon-rl-s", "reward", 4), ("bon-rlb", "reward", 4), ("bon-rlbp", "reward", 4),
    ("passk-chen", "reward", 4), ("bon-exact", "agreement", 4), ("tang-loo", "reward", 8), ("sft", "reward", 4),
    ("dco", "reward", 4), ("bon-sft", "confidence", 4)])
def test_every_objective_moves_the_weights_when_its_weights_are_not_zero(base_model, tmp_path, objective, verifier,
                                                                        k):
    trainer = Trainer(_config(base_model, tmp_path, objective=objective, verifier=verifier, k=k, steps=8,
                              checkpoint_every=0, kl_start=0.0, kl_end=0.0))
    for _ in range(6):  # a batch where every sample got weight 0 (all wrong, say) moves nothing: draw another
        batch = trainer.collect()
        if any(w != 0 for w in batch.weights):
            break
        trainer.step += 1
    assert any(w != 0 for w in batch.weights), f"{objective}: six batches with only zero weights"
    before = [p.detach().clone() for p in trainer.params]
    stats = trainer.update(batch)
    assert np.isfinite(stats["loss"]) and stats["grad_norm"] > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, trainer.params))


def test_training_at_temperature_follows_the_score_of_the_tempered_policy(base_model, tmp_path):
    """At T = 0.5 the update's gradient is −Σ w_i ∇ Σ_t log softmax(logits/T)[y_t], computed here independently;
    before the fix the trainer used log softmax(logits), the score of a distribution it never sampled from."""
    import copy

    trainer = Trainer(_config(base_model, tmp_path, objective="rloo", k=1, temperature=0.5, grad_clip=0.0,
                              kl_start=0.0, kl_end=0.0, checkpoint_every=0))
    for _ in range(6):
        batch = trainer.collect()
        if any(w != 0 for w in batch.weights):
            break
        trainer.step += 1
    assert any(w != 0 for w in batch.weights)
    reference = copy.deepcopy(trainer.model).train()
    loss = 0.0
    for prompt, tokens, weight in zip(batch.prompts, batch.tokens, batch.weights):
        ids = torch.tensor([prompt + tokens])
        logits = reference(input_ids=ids).logits[0, :-1] / 0.5
        lp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0][len(prompt) - 1:]
        loss = loss - weight * lp.sum()
    loss.backward()
    expected = [p.grad for p in reference.parameters() if p.requires_grad]
    trainer.update(batch)
    for got, want in zip(trainer.params, expected):
        torch.testing.assert_close(got.grad, want, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TrainConfig(temperature=0.0)


def test_bon_sft_scores_the_expert_answer_with_the_verifier(base_model, tmp_path):
    """Lemma 1 needs the verifier's score of the expert (reference) answer. The trainer once used the samples' best
    score instead, which cancels the λ_N term: scores (0.1, 0.7, 0.3, 0.7) gave weights (0, −0.5, 0, −0.5)."""
    calls = []

    def verifier(problems, completions):
        calls.append(len(completions))
        if len(completions) == 1:  # the reference answer
            assert completions[0].text == problems[0].reference
            return np.array([0.9])
        return np.tile([0.1, 0.7, 0.3, 0.7], len(completions) // 4)

    trainer = Trainer(_config(base_model, tmp_path, objective="bon-sft", n=4, k=4, batch_prompts=1,
                              kl_start=0.0, kl_end=0.0, checkpoint_every=0), verifier=verifier)
    batch = trainer.collect()
    assert calls == [4, 1]
    assert batch.weights[0] == 1.0  # the expert sequence
    np.testing.assert_allclose(batch.weights[1:], [0.0545, -0.4388, 0.0577, -0.4388], atol=5e-4)


def test_lora_trains_only_the_adapters(base_model, tmp_path):
    trainer = Trainer(_config(base_model, tmp_path, lora_rank=4, steps=2, checkpoint_every=0))
    frozen = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if not p.requires_grad}
    trainer.run()
    assert all("lora" in n for n, p in trainer.model.named_parameters() if p.requires_grad)
    for n, p in trainer.model.named_parameters():
        if n in frozen:
            assert torch.equal(frozen[n], p)
    trainer.save_model(tmp_path / "merged")
    assert (tmp_path / "merged" / "config.json").exists()


def test_bon_exact_improves_held_out_pass_at_k(base_model, tmp_path):
    """The acceptance run: seeded, under a minute; held-out pass@4 before and after, on the same problems."""
    config = _config(base_model, tmp_path, steps=60, batch_prompts=16, n=16, k=4, lr=2e-4, kl_start=0.0, kl_end=0.0,
                     eval_n=32, checkpoint_every=0)
    trainer = Trainer(config)
    before = trainer.evaluate()
    rows = trainer.run()
    after = trainer.evaluate()
    assert after["pass@4"] > before["pass@4"] + 0.02, (before, after)
    assert after["pass@1"] > before["pass@1"]
    early = np.mean([r["pass_at_k"] for r in rows[:15]])
    late = np.mean([r["pass_at_k"] for r in rows[-15:]])
    assert late > early  # the training batches' own pass@4 rises too


def test_kl_schedule_split_and_config_checks():
    config = TrainConfig(steps=11, kl_start=1.0, kl_end=0.075)
    assert kl_coefficient(config, 0) == 1.0 and kl_coefficient(config, 10) == pytest.approx(0.075)
    train, held_out = split_problems(tasks.load("arith", size=50), 10)
    assert len(held_out) == 10 and not {p.id for p in train} & {p.id for p in held_out}
    with pytest.raises(ValueError, match="unknown objective"):
        TrainConfig(objective="magic")
    with pytest.raises(ValueError, match="k must lie"):
        TrainConfig(n=4, k=8)


def test_train_command_runs_and_saves_the_model(base_model, tmp_path):
    from typer.testing import CliRunner

    from infertune.cli import app

    args = ["train", "--model", base_model, "--objective", "bon-rlb", "--n", "4", "--k", "2", "--steps", "2",
            "--batch-prompts", "4", "--eval-prompts", "100", "--eval-n", "4", "--max-new-tokens", "12",
            "--out", str(tmp_path)] + [x for opt in EASY for x in ("--task-option", opt)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out, before -> after" in result.output
    assert (tmp_path / "final" / "config.json").exists() and (tmp_path / "train_log.csv").exists()


def test_knapsack_spends_the_budget_over_the_pool_and_weighs_each_prompt_at_its_own_n(base_model, tmp_path):
    from infertune.objectives import sample_weights

    trainer = Trainer(_config(base_model, tmp_path, objective="rloo", k=1, batch_prompts=4, n=4, allocation="knapsack",
                              candidate_prompts=8, max_n=8, kl_start=0.0, kl_end=0.0, checkpoint_every=0))
    prompts_sampled = []
    for _ in range(4):
        drawn, planned = trainer._draw()  # from the history alone, before anything of this step is sampled
        batch = trainer.collect()
        sizes = [len(row) for row in batch.completions]
        assert sizes == planned and [p.id for p in batch.problems] == [p.id for p in drawn]
        assert sum(sizes) == 16 and all(2 <= s <= 8 for s in sizes) and len(sizes) <= 8
        m = len(sizes)
        prompts_sampled.append(m)
        for rewards, weights in zip(batch.rewards, batch.sample_weights):
            np.testing.assert_allclose(weights, sample_weights("rloo", rewards, k=1))
        pushed = list(batch.weights)
        expected = [w / m for weights in batch.sample_weights for w in weights if w != 0]
        np.testing.assert_allclose(sorted(pushed), sorted(expected))
        assert len(batch.idle) + len(batch.prompts) == 16
        for problem, rewards in zip(batch.problems, batch.rewards):
            assert trainer.history.latest[problem.id] == (rewards.sum(), rewards.size)
        trainer.step += 1
    # Some step skipped candidates: the division is by the prompts sampled, not by the pool.
    assert min(prompts_sampled) < 8, prompts_sampled


def test_entropy_and_scores_are_those_of_the_temperature_a_batch_was_drawn_at(base_model, tmp_path):
    """Auto-temperature moves the sampling temperature between steps: a batch drawn at T = 0.6 (config says 1.0) is
    scored with log softmax(logits/0.6) in the update, and the telemetry's entropy is the exact entropy of
    softmax(logits/0.6) at every sampled position, pushed or not, computed here independently."""
    import copy

    trainer = Trainer(_config(base_model, tmp_path, objective="rloo", k=1, grad_clip=0.0, kl_start=0.0, kl_end=0.0,
                              checkpoint_every=0))
    trainer.temperature = 0.6
    for _ in range(6):
        batch = trainer.collect()
        if any(w != 0 for w in batch.weights) and batch.idle:
            break
        trainer.step += 1
    assert batch.temperature == 0.6 and any(w != 0 for w in batch.weights) and batch.idle
    reference = copy.deepcopy(trainer.model).eval()
    loss, entropy, tokens = 0.0, 0.0, 0
    for prompt, row in zip(batch.row_prompts, batch.completions):
        for c in row:
            ids = torch.tensor([prompt + c.token_ids])
            with torch.no_grad():
                probs = torch.softmax(reference(input_ids=ids).logits[0, :-1] / 0.6, dim=-1)[len(prompt) - 1:]
            entropy += float(-(probs * torch.log(probs)).nansum())
            tokens += len(c.token_ids)
    for prompt, tokens_, weight in zip(batch.prompts, batch.tokens, batch.weights):
        ids = torch.tensor([prompt + tokens_])
        logits = reference(input_ids=ids).logits[0, :-1] / 0.6
        lp = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0][len(prompt) - 1:]
        loss = loss - weight * lp.sum()
    loss.backward()
    stats = trainer.update(batch)
    assert stats["entropy"] == pytest.approx(entropy / tokens, rel=1e-5)
    for got, want in zip(trainer.params, [p.grad for p in reference.parameters() if p.requires_grad]):
        torch.testing.assert_close(got.grad, want, rtol=1e-4, atol=1e-6)


def test_resume_with_knapsack_and_auto_temperature_reproduces_the_run(base_model, tmp_path):
    """The success history and the sampling temperature are part of the checkpoint."""
    overrides = dict(objective="rloo", k=1, batch_prompts=4, n=4, allocation="knapsack", candidate_prompts=8,
                     history_decay=0.5, auto_temperature=True, temperature_every=2, probe_prompts=4, kl_start=0.0,
                     kl_end=0.0, task_option=["size=120", *EASY[1:]])  # 20 training prompts: they come back
    uninterrupted = Trainer(_config(base_model, tmp_path / "whole", **overrides))
    whole = uninterrupted.run()

    def crash_at_step_5(row):
        if row["step"] == 5:
            raise Crash

    with pytest.raises(Crash):
        Trainer(_config(base_model, tmp_path / "resumed", **overrides)).run(progress=crash_at_step_5)
    resumed = Trainer(_config(base_model, tmp_path / "resumed", **overrides))
    rest = resumed.run()
    # Some prompt came back (so that the decayed sums were exercised), and the histories end equal.
    assert sum(r["prompts"] for r in whole) > len(uninterrupted.history.latest)
    assert uninterrupted.history.decay == resumed.history.decay == 0.5
    assert resumed.history == uninterrupted.history
    for a, b in zip(whole[3:], rest):
        for key in ("loss", "reward", "samples", "prompts", "temperature", "nonzero_prompts", "balance", "entropy"):
            assert a[key] == b[key], key
    assert all(abs(r["temperature"] - 1.0) <= 0.2 + 1e-9 for r in whole)  # at most two moves of 0.1
    with open(tmp_path / "whole" / "train_log.csv") as fh:
        logged = list(csv.DictReader(fh))
    assert [float(r["nonzero_prompts"]) for r in logged] == pytest.approx([r["nonzero_prompts"] for r in whole])


def test_train_command_with_knapsack_and_the_report_of_its_run(base_model, tmp_path):
    from typer.testing import CliRunner

    from infertune.cli import app

    args = ["train", "--model", base_model, "--objective", "grpo", "--n", "4", "--k", "1", "--steps", "2",
            "--batch-prompts", "4", "--allocation", "knapsack", "--candidate-prompts", "6", "--auto-temperature",
            "--temperature-every", "1", "--probe-prompts", "2", "--eval-prompts", "100", "--eval-n", "4",
            "--max-new-tokens", "12", "--out", str(tmp_path)] + [x for opt in EASY for x in ("--task-option", opt)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(tmp_path / "train_log.csv") as fh:
        logged = list(csv.DictReader(fh))
    assert [int(r["samples"]) for r in logged] == [16, 16]
    assert all(0 <= float(r["nonzero_prompts"]) <= 1 and float(r["entropy"]) > 0 for r in logged)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "telemetry.png").exists() and "nonzero_prompts" in result.output
