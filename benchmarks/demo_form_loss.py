"""Re-run one of the demo's own fine-tuning runs under recipe variants and score it on validation problems: does a
variant keep a rare solution form that the run loses?

A run that loses a form for good (its share of samples reaches 0 and the pass@k gradient, which only moves samples
that are drawn, never brings it back) is a property of the run's draw of prompts and samples, visible on the
validation problems as well as on the test problems. This re-runs the demo's fine-tuning seed ``--index`` of
``--seed`` for the pass@16 arm (or ``--arm``) with each variant, evaluates it on that seed's validation problems (never
its test problems) and prints one JSON line per variant: pass@1, pass@32 and the share of each form.

    python benchmarks/demo_form_loss.py --seed 1 --index 0 --variants base,warmup=5,kl=0.02,kl=0.1,kl=0.5

A variant is ``base`` (the demo's recipe) or comma-free ``field=value`` pairs joined by ``+`` (``kl=0.1`` sets
kl_start and kl_end; ``warmup=5`` sets warmup_steps; ``lr=1e-4`` the arm's learning rate; ``k=8`` its k;
``batch=32`` prompts per step and ``n=16`` samples per prompt, the same budget as 16 x 32).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from infertune.demo.run import ARMS, DemoConfig, Stages, base_model, evaluate, fine_tune, fit_verifier
from infertune.demo.settings import get_setting
from infertune.progress import NullProgress


def variant_config(config: DemoConfig, label: str, variant: str) -> DemoConfig:
    """The demo's configuration with one variant applied to ``label``'s arm."""
    if variant == "base":
        return config
    recipe = config.recipe
    for part in variant.split("+"):
        name, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"variant {variant!r}: expected field=value parts joined by '+', got {part!r}")
        if name == "kl":
            config = replace(config, arm_kls=f"{label}={float(value)}")
        elif name == "warmup":
            recipe = replace(recipe, warmup_steps=int(value))
        elif name == "lr":
            config = replace(config, arm_lrs=f"{label}={float(value)}")
        elif name == "k":
            config = replace(config, arm_ks=f"{label}={int(value)}")
        elif name in ("batch", "n"):
            recipe = replace(recipe, **{"batch_prompts" if name == "batch" else "n": int(value)})
        else:
            raise ValueError(f"variant {variant!r}: unknown field {name!r} (kl, warmup, lr, k, batch, n)")
    return replace(config, recipe=recipe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="The demo's --seed.")
    parser.add_argument("--index", type=int, default=0, help="The fine-tuning seed index: 0, 1 or 2 re-run the "
                        "demo's own runs; 10..999 are the recipe search's (demo_recipe.py --tuning-seeds).")
    parser.add_argument("--arm", default="bon-exact/reward")
    parser.add_argument("--variants", default="base,kl=0.1")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="infertune-form-loss-"))
    config = DemoConfig(out=str(out), seed=args.seed)
    setting = get_setting(config.setting)
    problems = setting.problems(config.seed, config.validation_prompts, config.eval_prompts)
    progress, stages = NullProgress(), Stages()
    base = base_model(config, setting, problems, progress, stages)
    verifier, _ = fit_verifier(config, setting, problems, base, out, progress, stages)
    arm = next(a for a in ARMS if a[0] == args.arm)
    k_eval = config.summary_k
    for variant in args.variants.split(","):
        trial = variant_config(config, arm[0], variant)
        name = f"{arm[0].replace('/', '-')}-{variant.replace('=', '').replace('+', '-')}-i{args.index}"
        started = time.perf_counter()
        model, tok = fine_tune(trial, setting, problems, base, verifier, arm, args.index, out / "train" / name,
                               progress)
        seconds = time.perf_counter() - started
        curves = evaluate(model, tok, problems.validation, problems.validation_task, verifier, trial, setting,
                          trial.recipe.temperature, out / "evals" / name, progress, name)
        print(json.dumps({"seed": args.seed, "index": args.index, "arm": arm[0], "variant": variant,
                          "fine_tune_seconds": round(seconds, 1),
                          "pass@1": round(float(curves["pass"][:, 0].mean()), 4),
                          f"pass@{k_eval}": round(float(curves["pass"][:, k_eval - 1].mean()), 4),
                          "form_share": [round(float(x), 4) for x in curves["form_share"].mean(axis=0)]}),
              flush=True)


if __name__ == "__main__":
    main()
