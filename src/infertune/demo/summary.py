"""The demo's figures: method-level intervals, the comparisons fixed before evaluation, the mechanism, a plot and a
findings paragraph generated from the numbers, each clause stated only where its numbers show it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from infertune.estimators import method_difference, method_interval

SUMMARY_KS = (1, 4, 16, 32, 64)
METRICS = ("pass", "bon", "maj")
METRIC_NAMES = {"pass": "pass", "bon": "BoN", "maj": "maj"}
OBJECTIVE = {"base": "none", "base@best-T": "none", "rloo": "rloo", "rl-v": "rloo (on the verifier's score)",
             "bon-exact/verifier": "bon-exact", "bon-exact/reward": "bon-exact", "bon-rlb": "bon-rlb"}

# Fixed before any evaluation: (a, b, metric). The targets say how large a difference the demo sets out to show.
COMPARISONS = [
    ("bon-exact/reward", "base", "pass"),
    ("bon-exact/reward", "rloo", "pass"),
    ("bon-exact/reward", "base@best-T", "pass"),
    ("bon-exact/verifier", "base", "bon"),
    ("bon-exact/verifier", "base@best-T", "bon"),
    ("bon-exact/verifier", "rloo", "bon"),
    ("bon-exact/verifier", "rl-v", "bon"),
    ("rloo", "base", "pass"),
    ("rloo", "base", "bon"),
]
TARGETS = {  # forms setting: (a, b, metric) -> smallest difference claimed (the paper's sizes: +7 pass, +4 BoN)
    ("bon-exact/reward", "base", "pass"): 0.05,
    ("bon-exact/reward", "rloo", "pass"): 0.05,
    ("bon-exact/verifier", "base", "bon"): 0.03,
    ("bon-exact/verifier", "rloo", "bon"): 0.03,
    ("bon-exact/verifier", "rl-v", "bon"): 0.0,
    ("bon-exact/verifier", "base@best-T", "bon"): 0.0,  # the cheap alternative: must not do as well
}


def summarise(results: dict[str, list[dict]], config, setting, quality: dict, best_t: float,
              by_temperature: dict, out: Path) -> dict:
    n, k = config.eval_n, config.summary_k
    ks = [x for x in SUMMARY_KS if x <= n]
    stacked = {m: {arm: np.stack([r[m] for r in runs]) for arm, runs in results.items()} for m in METRICS}
    intervals = {m: {arm: method_interval(x) for arm, x in stacked[m].items()} for m in METRICS}
    summary, per_seed = [], []
    for arm, runs in results.items():
        for metric in METRICS:
            iv = intervals[metric][arm]
            for x in ks:  # an accuracy lies in [0, 1]; the t interval is clipped to it
                summary.append({"model": arm, "objective": OBJECTIVE.get(arm, arm), "metric": metric, "k": x,
                                "mean": float(iv.mean[x - 1]), "ci_low": max(0.0, float(iv.low[x - 1])),
                                "ci_high": min(1.0, float(iv.high[x - 1])), "seeds": len(runs)})
            for s, r in enumerate(runs):
                per_seed.append({"model": arm, "seed": s, "metric": metric,
                                 **{f"k{x}": float(r[metric][:, x - 1].mean()) for x in ks}})
    comparisons = []
    for a, b, metric in COMPARISONS:
        if a in results and b in results:
            d = method_difference(stacked[metric][a], stacked[metric][b])
            row = {"a": a, "b": b, "metric": metric, "k": k, "difference": float(d.mean[k - 1]),
                   "ci_low": float(d.low[k - 1]), "ci_high": float(d.high[k - 1])}
            target = TARGETS.get((a, b, metric)) if setting.name == "forms" else None
            if target is not None:
                row["target"] = target
                row["target_met"] = bool(row["difference"] >= target and row["ci_low"] > 0)
            comparisons.append(row)
    mechanism = _mechanism(results)
    plot_path = out / "curves.png"
    plot(intervals, list(results), n, mechanism, setting.name, plot_path)
    report = {"setting": setting.name, "setting_summary": setting.summary, "summary": summary,
              "comparisons": comparisons, "per_seed": per_seed, "verifier": quality, "mechanism": mechanism,
              "temperature_choice": {"chosen_on": "validation", "best_temperature": best_t,
                                     "by_temperature": {f"{t:g}": v for t, v in by_temperature.items()}},
              "config": asdict(config), "arms": config.arms(), "plot": str(plot_path)}
    report["findings"] = findings(report, config)
    return report


def _mechanism(results: dict[str, list[dict]]) -> dict:
    out = {}
    for arm, runs in results.items():
        row = {"distinct_answers_per_problem": float(np.mean([r["distinct"].mean() for r in runs]))}
        if "form_share" in runs[0]:
            shares = np.mean([r["form_share"].mean(axis=0) for r in runs], axis=0)
            row["form_share"] = [float(x) for x in shares[:-1]]
            row["bare_target_share"] = float(shares[-1])
            row["other_share"] = float(max(0.0, 1.0 - shares.sum()))
        out[arm] = row
    return out


def _rare_share(row: dict) -> float:
    """The share of samples in the two forms the supervised data used least (4% and 1%)."""
    return float(sum(row["form_share"][2:]))


def _mechanism_reading(mech: dict) -> list[str]:
    """What the form shares say, stated only where the numbers say it (each sentence checks its own condition)."""
    out = []
    base, rloo = mech["base"], mech.get("rloo")
    if rloo is not None:
        if _rare_share(rloo) < _rare_share(base):
            out.append(f"Training for one sample sharpens the prior it has (the two rare forms fall from "
                       f"{_rare_share(base) * 100:.0f}% of samples to {_rare_share(rloo) * 100:.0f}%).")
        else:
            out.append("Training for one sample did not narrow the base's use of the rare forms here.")
    for arm, what in (("bon-exact/reward", "pass@k training"), ("bon-exact/verifier", "Best-of-N training by the "
                                                                                       "verifier")):
        if arm in mech:
            moved = _rare_share(mech[arm]) - _rare_share(base)
            verb = "moves mass to" if moved > 0 else "does not move mass to"
            out.append(f"{what[0].upper() + what[1:]} {verb} the rare forms ({_rare_share(mech[arm]) * 100:.0f}% "
                       f"of samples).")
    if "bon-exact/verifier" in mech and "rl-v" in mech:
        bv, rv, b0 = (mech[a]["bare_target_share"] for a in ("bon-exact/verifier", "rl-v", "base"))
        if rv > b0 and bv < b0:
            out.append(f"Optimising the verifier's score drives samples into its blind spot (bare-target answers "
                       f"{b0 * 100:.0f}% -> {rv * 100:.0f}%), while training against the verifier's Best-of-N pick, "
                       f"judged by the reward, pushes them down ({bv * 100:.0f}%).")
        else:
            out.append(f"Bare-target answers: base {b0 * 100:.0f}%, RLOO on the verifier {rv * 100:.0f}%, "
                       f"Best-of-N training by the verifier {bv * 100:.0f}%.")
    return out


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}"


def findings(report: dict, config) -> str:
    """One paragraph that says what holds and what does not, with the figures."""
    k = config.summary_k
    rows = {(c["a"], c["b"], c["metric"]): c for c in report["comparisons"]}
    at = {(r["model"], r["metric"]): r for r in report["summary"] if r["k"] == k}

    def diff(a, b, metric) -> str:
        c = rows[(a, b, metric)]
        return f"{_pct(c['difference'])} points [{_pct(c['ci_low'])}, {_pct(c['ci_high'])}]"

    def level(model, metric) -> str:
        return f"{at[(model, metric)]['mean']:.3f}"

    if config.seeds > 1:
        spread = (f"95% intervals cover problems and fine-tuning seeds (a two-way random-effects model with a t "
                  f"quantile), given the one base model and one verifier of this --seed")
    else:
        spread = ("one fine-tuning seed, so the 95% intervals cover problems only (fine-tuning variance is not in "
                  "them)")
    parts = [f"Test problems ({config.eval_prompts} x {config.eval_n} samples), {config.seeds} fine-tuning seed(s) "
             f"per method; {spread}. The base's temperature was chosen on validation problems; the fine-tuning "
             f"recipe on the forms setting's validation problems (benchmarks/demo_recipe.py)."]
    if ("bon-exact/reward", "base", "pass") in rows:
        parts.append(f"Trained for pass@{config.k_for('bon-exact/reward')}, the model reaches pass@{k} "
                     f"{level('bon-exact/reward', 'pass')}"
                     f" against {level('base', 'pass')} for the base ({diff('bon-exact/reward', 'base', 'pass')}) "
                     f"and {level('rloo', 'pass')} for RLOO ({diff('bon-exact/reward', 'rloo', 'pass')}).")
    if ("bon-exact/verifier", "base", "bon") in rows:
        parts.append(f"Trained for Best-of-{config.k_for('bon-exact/verifier')} by the verifier, it reaches BoN@{k} "
                     f"{level('bon-exact/verifier', 'bon')} against {level('base', 'bon')} for the base "
                     f"({diff('bon-exact/verifier', 'base', 'bon')}), {level('base@best-T', 'bon')} for the base at its "
                     f"best temperature T={report['temperature_choice']['best_temperature']:g} "
                     f"({diff('bon-exact/verifier', 'base@best-T', 'bon')}), {level('rloo', 'bon')} for RLOO "
                     f"({diff('bon-exact/verifier', 'rloo', 'bon')}) and {level('rl-v', 'bon')} for RLOO on the "
                     f"verifier's score ({diff('bon-exact/verifier', 'rl-v', 'bon')}).")
    mech = report["mechanism"]
    if "form_share" in mech.get("base", {}):
        def forms(arm):
            shares = mech[arm]["form_share"]
            return "/".join(f"{x * 100:.0f}" for x in shares) + f" (bare target {mech[arm]['bare_target_share'] * 100:.0f}%)"

        parts.append(f"Why: each test problem needs one of four forms, evenly; the base samples them "
                     f"{forms('base')} per cent, RLOO {forms('rloo')}, RLOO on the verifier {forms('rl-v')}, "
                     f"pass@k training {forms('bon-exact/reward')} and Best-of-N training by the verifier "
                     f"{forms('bon-exact/verifier')}.")
        parts.extend(_mechanism_reading(mech))
    quality = report["verifier"]
    text = (f"The learned verifier has AUC {quality['auc']:.2f} on base samples of unseen training prompts")
    if "blind_spot" in quality:
        spot = quality["blind_spot"]
        correct = spot["mean_score_correct"]
        text += (f" ({spot['auc_without_it']:.2f} without its blind spot; bare-target answers score "
                 f"{spot['mean_score']:.2f} on average"
                 + (f", correct answers {correct:.2f})" if correct is not None else ")"))
    parts.append(text + ".")
    targets = [c for c in report["comparisons"] if "target" in c]
    missed = [c for c in targets if not c["target_met"]]
    if targets:
        if missed:
            parts.append("Targets missed: " + "; ".join(
                f"{c['a']} - {c['b']} on {METRIC_NAMES[c['metric']]}@{k} {_pct(c['difference'])} points "
                f"(lower end {_pct(c['ci_low'])}; target {_pct(c['target'])} with the lower end above 0)"
                for c in missed) + ".")
        else:
            parts.append(f"All {len(targets)} targets are met (differences at least the target, interval lower "
                         "ends above 0).")
    elif report["setting"] == "balanced":
        verdicts = []
        for a, metric in (("bon-exact/reward", "pass"), ("bon-exact/verifier", "bon")):
            c = rows.get((a, "base", metric))
            if c is not None:
                verdict = ("above" if c["ci_low"] > 0 else "below" if c["ci_high"] < 0 else "indistinguishable from")
                verdicts.append(f"{a} is {verdict} the base on {METRIC_NAMES[metric]}@{k}")
        parts.append("This is the negative control: a balanced prior and a verifier without a systematic blind spot "
                     "leave Best-of-N training nothing to fix; here " + " and ".join(verdicts) + ".")
    return " ".join(parts)


def plot(intervals: dict, arms: list[str], n: int, mechanism: dict, setting: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"pass": "pass@k (oracle)", "bon": "Best-of-k by the learned verifier", "maj": "majority vote"}
    has_forms = "form_share" in mechanism.get("base", {})
    fig, axes = plt.subplots(1, 4 if has_forms else 3, figsize=(20 if has_forms else 15, 4.6))
    colors = dict(zip(arms, plt.get_cmap("tab10")(np.arange(len(arms)))))
    k = np.arange(1, n + 1)
    for ax, metric in zip(axes, METRICS):
        for arm in arms:
            iv = intervals[metric][arm]
            ax.plot(k, iv.mean, label=arm, color=colors[arm], linestyle="--" if arm.startswith("base") else "-")
            ax.fill_between(k, np.clip(iv.low, 0, 1), np.clip(iv.high, 0, 1), color=colors[arm], alpha=0.15,
                            linewidth=0)
        ax.set_xscale("log", base=2)
        ax.set_title(titles[metric])
        ax.set_xlabel("k (samples)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy on test problems")
    axes[0].legend(fontsize=8)
    if has_forms:
        ax = axes[3]
        labels = ["(a+b)*(c+d)", "a*b+c*d", "(a+b+c)*d", "a*b*c-d", "bare target"]
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            values = mechanism[arm]["form_share"] + [mechanism[arm]["bare_target_share"]]
            ax.bar(np.arange(len(labels)) + i * width, values, width, color=colors[arm], label=arm)
        ax.axhline(0.25, color="grey", linestyle=":", linewidth=1)
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels, rotation=20, fontsize=8)
        ax.set_title("share of samples by form (25% each needed)")
    fig.suptitle(f"infertune demo ({setting} setting): bands are method-level 95% intervals (problems, and "
                 "fine-tuning seeds where there are several)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
