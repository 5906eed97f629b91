"""The main job: at reduced size the whole pipeline runs, writes what it promises through the product's own path
and resumes from its outputs; at full size (marked slow) it shows its claim."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from infertune.cli import app
from infertune.demo.jobs import usable_cores

ARMS = {"base", "base@best-T", "rloo", "rl-v", "bon-exact/verifier", "bon-exact/reward"}


def test_quick_demo_end_to_end_and_resume(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERTUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out)], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    rows = results["summary"]
    assert set(rows[0]) == {"model", "objective", "metric", "k", "mean", "ci_low", "ci_high", "seeds"}
    assert {r["model"] for r in rows} == ARMS and {r["metric"] for r in rows} == {"pass", "bon", "maj"}
    for r in rows:
        assert r["ci_low"] - 1e-12 <= r["mean"] <= r["ci_high"] + 1e-12 and r["seeds"] >= 1
        if r["metric"] == "pass":  # pass@k grows with k
            later = [q for q in rows if q["model"] == r["model"] and q["metric"] == "pass" and q["k"] > r["k"]]
            assert all(q["mean"] >= r["mean"] - 1e-12 for q in later)
    comparisons = {(c["a"], c["b"], c["metric"]): c for c in results["comparisons"]}
    for key in [("bon-exact/reward", "base", "pass"), ("bon-exact/reward", "rloo", "pass"),
                ("bon-exact/verifier", "base", "bon"), ("bon-exact/verifier", "base@best-T", "bon"),
                ("bon-exact/verifier", "rloo", "bon"), ("bon-exact/verifier", "rl-v", "bon")]:
        c = comparisons[key]
        assert c["k"] == 32 and c["ci_low"] <= c["difference"] <= c["ci_high"]
        assert "target_met" in c
    assert results["temperature_choice"]["chosen_on"] == "validation"
    # Each arm's effective k: quick keeps k at most half its n = 16 (the full default trains pass@16).
    assert {label: arm["k"] for label, arm in results["arms"].items()} == {
        "rloo": 1, "rl-v": 1, "bon-exact/verifier": 8, "bon-exact/reward": 8}
    assert "blind_spot" in results["verifier"] and len(results["mechanism"]["base"]["form_share"]) == 4
    assert (out / "curves.png").stat().st_size > 10_000 and results["findings"]
    # Every stage reported progress as readable lines (the output is not a terminal here).
    for stage in ("[base model (supervised)]", "[verifier fit]", "[fine-tune", "[evaluate on test problems"):
        assert stage in result.output, stage
    # The runs go side by side in worker processes (one per usable core) and the stage names the ones under way.
    assert "rloo seed 0 " in result.output and "bon-exact-reward-seed0 " in result.output
    if usable_cores() > 1:
        assert "[fine-tune (4, 2 at a time)]" in result.output
    assert "comparisons fixed in advance" in result.output and "stages:" in result.output
    # The product's own path: each evaluation is a sample store that infertune report reopens.
    report = CliRunner().invoke(app, ["report", str(out / "evals" / "rloo-seed0"), "--bootstrap", "50"],
                                env={"COLUMNS": "120"})
    assert report.exit_code == 0, report.output
    assert "bon:verifier" in report.output, report.output
    # A second run reuses every stage it finds on disk and reports the same figures; an evaluation that is missing
    # (as after an interruption) is made again from the run's kept model, without fine-tuning it again, and in
    # this process (one worker) where the first run used one per core.
    (out / "evals" / "rloo-seed0.npz").unlink()
    assert (out / "train" / "rloo-seed0" / "final" / "config.json").exists()
    again = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--workers", "1"])
    assert again.exit_code == 0, again.output
    reused = json.loads((out / "results.json").read_text())
    assert "fine_tune" not in reused["stages_seconds"] and "evaluate" in reused["stages_seconds"]
    assert "base_model" in reused["reused_from_earlier_runs"] and "rloo-seed0" not in reused["reused_from_earlier_runs"]
    # The same samples again; curve arithmetic may differ in the last bit between processes.
    assert len(reused["summary"]) == len(results["summary"])
    for got, want in zip(reused["summary"], results["summary"]):
        numbers = [key for key, value in want.items() if isinstance(value, float)]
        assert {key: got[key] for key in want if key not in numbers} == {key: want[key] for key in want
                                                                         if key not in numbers}
        assert [got[key] for key in numbers] == pytest.approx([want[key] for key in numbers], rel=1e-12, abs=1e-12)
    # Another configuration in the same folder is refused, naming what differs, instead of mixed in.
    other = CliRunner().invoke(app, ["demo", "--quick", "--out", str(out), "--seed", "1"])
    assert other.exit_code != 0 and "seed" in other.output, other.output


def test_a_folder_written_under_another_setting_recipe_is_refused(tmp_path, monkeypatch):
    """The setting's recipe (base and verifier sizes and steps) is part of what a folder's stages ran with: after
    it changes, resuming would mix a verifier fitted under the old recipe into new results."""

    from infertune.demo import settings
    from infertune.demo.run import DemoConfig, claim_output_folder

    config = DemoConfig(out=str(tmp_path / "demo"))
    claim_output_folder(config, tmp_path / "demo")
    claim_output_folder(config, tmp_path / "demo")  # the same recipe resumes
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    del manifest["arm_kls"]  # a folder written before the field existed ran with its default: it resumes
    (tmp_path / "demo" / "manifest.json").write_text(json.dumps(manifest))
    claim_output_folder(config, tmp_path / "demo")
    with pytest.raises(ValueError, match="arm_kls differ"):
        claim_output_folder(replace(config, arm_kls="bon-exact/reward=0.1"), tmp_path / "demo")
    changed = replace(settings.SETTINGS["forms"], verifier_prompts=settings.SETTINGS["forms"].verifier_prompts // 2)
    monkeypatch.setitem(settings.SETTINGS, "forms", changed)
    with pytest.raises(ValueError, match="setting_recipe"):
        claim_output_folder(config, tmp_path / "demo")


def test_demo_configuration_errors_are_clear():
    from infertune.demo import DemoConfig

    with pytest.raises(ValueError, match="unknown arms: rlooo"):
        DemoConfig(arm_lrs="rlooo=1e-4")
    with pytest.raises(ValueError, match="label=learning_rate"):
        DemoConfig(arm_lrs="rloo:1e-4")
    assert DemoConfig(arm_lrs="rloo=3e-4").lr_for("rloo") == 3e-4
    assert DemoConfig(arm_lrs="rloo=3e-4").lr_for("rl-v") == DemoConfig().recipe.lr
    with pytest.raises(ValueError, match="arms without a k: rloo"):
        DemoConfig(arm_ks="rloo=16")
    with pytest.raises(ValueError, match="at most the samples per prompt n=32"):
        DemoConfig(arm_ks="bon-exact/reward=64")
    with pytest.raises(ValueError, match="arm_ks: expected label=k"):
        DemoConfig(arm_ks="bon-exact/reward=1.5")
    config = DemoConfig(arm_ks="bon-exact/reward=16")
    assert (config.k_for("bon-exact/reward"), config.k_for("bon-exact/verifier"), config.k_for("rloo")) == (
        16, config.recipe.k, 1)
    with pytest.raises(ValueError, match="arm_ks names unknown arms: bogus"):
        DemoConfig(arm_ks="bogus=4")
    small = DemoConfig(recipe=replace(DemoConfig().recipe, n=12))  # the default k = 16 is capped, not refused
    assert small.k_for("bon-exact/reward") == 6
    assert DemoConfig(quick=True, arm_ks="bon-exact/reward=12").resolved().k_for("bon-exact/reward") == 8
    with pytest.raises(ValueError, match=r"arm_kls: expected label=kl_coefficient \(>= 0\)"):
        DemoConfig(arm_kls="bon-exact/reward=-0.1")
    with pytest.raises(ValueError, match="arm_kls names unknown arms: bogus"):
        DemoConfig(arm_kls="bogus=0.1")
    config = DemoConfig(arm_kls="bon-exact/reward=0.1,rloo=0")
    assert config.kl_for("bon-exact/reward") == (0.1, 0.1) and config.kl_for("rloo") == (0.0, 0.0)
    annealed = DemoConfig(recipe=replace(DemoConfig().recipe, kl_start=0.5, kl_end=0.05))
    assert annealed.kl_for("rl-v") == (0.5, 0.05)  # an arm not listed keeps the recipe's own schedule
    assert config.arms()["bon-exact/reward"]["kl"] == [0.1, 0.1]


def test_each_arm_fine_tunes_with_its_own_kl_coefficient(tmp_path, monkeypatch):
    """arm_kls reaches the trainer: the named arm trains with its KL penalty, the others with the recipe's."""
    from infertune.demo import run
    from infertune.demo.settings import get_setting
    from infertune.progress import NullProgress

    seen = {}

    class RecordingTrainer:
        def __init__(self, config, **kwargs):
            seen[config.out] = (config.kl_start, config.kl_end, config.k, config.lr)
            self.model, self.step = None, 0

        def load_checkpoint(self):
            return False

        def run(self, progress=None):
            pass

    monkeypatch.setattr(run, "Trainer", RecordingTrainer)
    monkeypatch.setattr(run, "load_model", lambda path: (None, None))
    # The recipe anneals its own KL: the arms not named must train with that schedule, not with 0.
    recipe = replace(run.DemoConfig().recipe, kl_start=0.5, kl_end=0.05)
    config = run.DemoConfig(recipe=recipe, arm_kls="bon-exact/reward=0.1", arm_lrs="bon-exact/reward=3e-4")
    problems = get_setting("forms").problems(0, 8, 8)
    for arm in run.ARMS:
        run.fine_tune(config, get_setting("forms"), problems, tmp_path, None, arm, 0, tmp_path / arm[0], NullProgress())
    assert seen[str(tmp_path / "bon-exact/reward")] == (0.1, 0.1, 16, 3e-4)
    for label in ("rloo", "rl-v", "bon-exact/verifier"):
        assert seen[str(tmp_path / label)][:2] == (0.5, 0.05), label


def test_demo_cli_passes_arm_kls_through(tmp_path):
    """--arm-kls maps onto DemoConfig.arm_kls: a bad value is refused by name before anything runs."""
    result = CliRunner().invoke(app, ["demo", "--arm-kls", "bogus=0.1", "--out", str(tmp_path / "demo")])
    assert result.exit_code != 0 and "arm_kls names unknown arms: bogus" in result.output, result.output
    assert not (tmp_path / "demo").exists()


def test_demo_problems_are_balanced_independent_and_disjoint():
    from collections import Counter

    from infertune.demo.settings import get_setting
    from infertune.tasks.forms import states_bare_target

    problems = get_setting("forms").problems(3, 40, 120)
    digits = [tuple(p.target["digits"]) for p in problems.test]
    assert len(set(digits)) == len(digits)  # one problem per digit tuple
    assert set(digits).isdisjoint(tuple(p.target["digits"]) for p in problems.validation)
    assert set(Counter(p.metadata["form"] for p in problems.test).values()) == {30}
    assert states_bare_target(" 048 ", 48) and states_bare_target("48", 48)
    assert not states_bare_target("4*8", 32) and not states_bare_target("49", 48)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # one full demo: 12.5 to 13.6 minutes here, over the suite's 600-s default
@pytest.mark.parametrize("seed", range(9))
def test_full_demo_meets_its_targets(tmp_path, monkeypatch, seed):
    """The claim itself, at the default size: every target met with the interval's lower end above 0. Seed 0 was
    the development seed (its test problems were seen while the setting was designed), seeds 1 and 2's validation
    problems chose the learning rates and k (their test results under earlier recipes were seen), 3 to 8 are held
    out (3 to 6 were evaluated under the previous recipe too). Seed 1 missed its two pass@32 targets with three
    fine-tuning runs per arm, one of which lost the rarest form; the default became four runs after that (see the
    README). 12.5 to 13.6 minutes per seed on 2 cores; run with ``pytest -m slow``."""
    monkeypatch.setenv("INFERTUNE_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--seed", str(seed)])
    assert result.exit_code == 0, result.output
    comparisons = json.loads((out / "results.json").read_text())["comparisons"]
    targets = [c for c in comparisons if "target" in c]
    assert len(targets) == 6
    assert all(c["target_met"] for c in targets), [c for c in targets if not c["target_met"]]


def test_findings_state_each_mechanism_clause_only_where_its_numbers_show_it():
    from infertune.demo.summary import _mechanism_reading

    def row(shares, bare):
        return {"form_share": shares, "bare_target_share": bare}

    shown = " ".join(_mechanism_reading({
        "base": row([0.5, 0.2, 0.04, 0.02], 0.10), "rloo": row([0.55, 0.35, 0.02, 0.01], 0.01),
        "rl-v": row([0.1, 0.15, 0.01, 0.01], 0.49), "bon-exact/reward": row([0.27, 0.13, 0.26, 0.21], 0.0),
        "bon-exact/verifier": row([0.27, 0.22, 0.32, 0.07], 0.0)}))
    assert "sharpens the prior" in shown and "drives samples into its blind spot" in shown
    assert "does not move" not in shown
    not_shown = " ".join(_mechanism_reading({
        "base": row([0.5, 0.2, 0.04, 0.02], 0.10), "rloo": row([0.4, 0.3, 0.1, 0.05], 0.01),
        "rl-v": row([0.5, 0.2, 0.04, 0.02], 0.05), "bon-exact/reward": row([0.6, 0.3, 0.02, 0.01], 0.0),
        "bon-exact/verifier": row([0.6, 0.3, 0.02, 0.01], 0.12)}))
    assert "sharpens" not in not_shown and "blind spot" not in not_shown
    assert "does not move mass" in not_shown and "did not narrow" in not_shown


def test_base_model_training_is_exclusive_across_processes(tmp_path):
    """Two runs that need the same cached base at once: the second waits for the first's lock (and is told why)
    instead of training into the same folder beside it."""
    import threading
    import time

    from infertune.demo.run import _exclusive

    lock, events, waited = tmp_path / ".lock", [], []

    def second():
        with _exclusive(lock, on_wait=lambda: waited.append(True)):
            events.append("second in")

    with _exclusive(lock):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.3)
        events.append("first out")
    thread.join(timeout=10)
    assert events == ["first out", "second in"] and waited == [True]
