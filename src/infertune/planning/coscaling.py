"""The co-scaling of N and temperature (Chow et al.): pass@N(T) ≈ exp(a(T)·N^b(T)), its fit, the best T for each N,
and a plot. The measured pass@N curves come from the evaluation core."""

from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit

from infertune.evaluation import per_prompt_curves


def plot_coscaling(pass_curves: dict, fits: list[dict], best: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.get_cmap("viridis")(np.linspace(0.05, 0.85, max(len(pass_curves), 1)))
    for color, fit in zip(colors, fits):
        curve = pass_curves[fit["temperature"]]
        n = np.arange(1, curve.size + 1)
        left.plot(n, curve, "o", ms=3, color=color, label=f"T={fit['temperature']:g} measured")
        if fit["a"] is not None:
            grid = np.logspace(0, np.log2(16 * curve.size), 100, base=2)
            left.plot(grid, _law(grid, fit["a"], fit["b"]), "-", color=color,
                      label=f"fit a={fit['a']:.2f}, b={fit['b']:.2f}, R²={fit['r2']:.3f}")
    left.set_xscale("log", base=2)
    left.set_xlabel("N")
    left.set_ylabel("pass@N")
    left.set_title("pass@N(T) ≈ exp(a(T)·N^b(T))")
    left.grid(True, alpha=0.3)
    left.legend(fontsize=7)
    if best:
        right.step([b["n"] for b in best], [b["best_temperature"] for b in best], where="mid")
        right.set_xscale("log", base=2)
    right.set_xlabel("N")
    right.set_ylabel("best temperature (fitted)")
    right.set_title("Predicted best temperature for each N")
    right.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _law(n, a, b):
    return np.exp(a * np.power(n, b))


def coscaling_fit(pass_by_temperature: dict[float, np.ndarray]) -> list[dict]:
    """Fit pass@N(T) ≈ exp(a(T)·N^b(T)) per temperature, on the mean pass@N curve for N = 1..n.

    Returns a(T), b(T), R² of the fit on pass@N and the largest absolute error. A curve that is 0 or 1 everywhere
    has nothing to fit and is reported without parameters.
    """
    fits = []
    for t, curve in sorted(pass_by_temperature.items()):
        curve = np.asarray(curve, dtype=np.float64)
        n = np.arange(1, curve.size + 1, dtype=np.float64)
        row = {"temperature": float(t), "a": None, "b": None, "r2": None, "max_abs_error": None}
        if 0 < curve[0] < 1:
            try:
                (a, b), _ = curve_fit(_law, n, curve, p0=(np.log(curve[0]), -0.5), maxfev=20_000)
                fitted = _law(n, a, b)
                ss_res = float(((curve - fitted) ** 2).sum())
                ss_tot = float(((curve - curve.mean()) ** 2).sum())
                row.update(a=float(a), b=float(b), r2=1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
                           max_abs_error=float(np.abs(curve - fitted).max()))
            except RuntimeError:
                pass
        fits.append(row)
    return fits


def best_temperature(fits: list[dict], ns) -> list[dict]:
    """The temperature whose fitted law predicts the highest pass@N, for each N (extrapolated beyond the data)."""
    usable = [f for f in fits if f["a"] is not None]
    out = []
    for n in ns:
        if not usable:
            break
        preds = {f["temperature"]: float(_law(n, f["a"], f["b"])) for f in usable}
        t = max(preds, key=preds.get)
        out.append({"n": int(n), "best_temperature": t, "predicted_pass": preds[t]})
    return out


def pass_curves_by_temperature(samples_by_temperature: dict) -> dict[float, np.ndarray]:
    """Mean pass@N for N = 1..n at each temperature (expected best reward of N when rewards are not binary)."""
    return {float(t): per_prompt_curves(s, rules=["pass"])["pass"].values.mean(axis=0)
            for t, s in samples_by_temperature.items()}
