"""Figures for the report (matplotlib, Agg backend). Missing values are gaps, never zeros.

Each function writes a PNG and returns the data it plotted (so tests and the report can check
exactly what is drawn)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import ensure_parent  # noqa: E402
from .stats import load_metrics_file  # noqa: E402

DEMO_STAMP = "DEMO: tiny random model, numbers mean nothing"


def _lookup(metrics_files: dict, model: str, benchmark: str) -> dict | None:
    path = (metrics_files.get(model) or {}).get(benchmark)
    if path is None or not Path(path).exists():
        return None
    doc = load_metrics_file(path)
    return doc


def _value(doc: dict | None, metric: str | None) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) with NaN for anything missing."""
    nan = float("nan")
    if doc is None or doc.get("status", "ok") != "ok":
        return nan, nan, nan
    metric = metric or doc.get("primary_metric")
    m = (doc.get("metrics") or {}).get(metric) or {}

    def f(x: Any) -> float:
        return nan if x is None or isinstance(x, bool) else float(x)

    return f(m.get("value")), f(m.get("ci_low")), f(m.get("ci_high"))


def _save(fig, out_png: str, demo: bool) -> None:
    if demo:
        fig.text(0.5, 0.5, DEMO_STAMP, ha="center", va="center", fontsize=14, color="red",
                 alpha=0.35, rotation=20)
    ensure_parent(out_png)
    tmp = Path(out_png).with_name(f".{Path(out_png).name}.tmp.png")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(out_png)


def robustness_curve(metrics_files: dict[str, dict[str, str]], arms: list[str],
                     posttrain_sizes: list[int], benchmark: str, metric: str | None,
                     out_png: str, *, demo: bool = False) -> dict:
    """Score vs number of post-training samples (0 = the arm itself, n = ``{arm}.post{n}``), one
    line per arm with a CI band. metric None = each file's primary metric.
    Returns {"x": [...], "metric": ..., "series": {arm: {"value", "ci_low", "ci_high"}}}."""
    xs = [0] + sorted(int(n) for n in posttrain_sizes)
    series: dict[str, dict[str, list[float]]] = {}
    resolved = metric
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    missing = []
    for arm in arms:
        vals, lows, highs = [], [], []
        for n in xs:
            model = arm if n == 0 else f"{arm}.post{n}"
            doc = _lookup(metrics_files, model, benchmark)
            if resolved is None and doc is not None:
                resolved = doc.get("primary_metric")
            v, lo, hi = _value(doc, metric)
            if math.isnan(v):
                missing.append(model)
            vals.append(v)
            lows.append(lo)
            highs.append(hi)
        series[arm] = {"value": vals, "ci_low": lows, "ci_high": highs}
        line, = ax.plot(xs, vals, marker="o", label=arm)
        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
        # whiskers too, so a point between two gaps still shows its interval
        ok = [i for i in range(len(xs)) if not (math.isnan(vals[i]) or math.isnan(lows[i])
                                                  or math.isnan(highs[i]))]
        if ok:
            ax.errorbar([xs[i] for i in ok], [vals[i] for i in ok],
                        yerr=[[vals[i] - lows[i] for i in ok], [highs[i] - vals[i] for i in ok]],
                        fmt="none", ecolor=line.get_color(), capsize=3, linewidth=1)
    ax.set_xlabel("post-training samples (0 = arm before post-training)")
    ax.set_ylabel(resolved or "score")
    ax.set_xticks(xs)
    ax.set_title(f"{benchmark}: robustness to post-training")
    if arms:
        ax.legend()
    if missing:
        ax.text(0.01, 0.01, "missing (gap): " + ", ".join(missing), transform=ax.transAxes,
                fontsize=7, va="bottom")
    ax.grid(alpha=0.3)
    _save(fig, out_png, demo)
    return {"x": xs, "metric": resolved, "series": series, "missing": missing}


def dimension_profile(metrics_files: dict[str, dict[str, str]], models: list[str],
                      benchmark: str, out_png: str, *, prefix: str = "dimension:",
                      demo: bool = False) -> dict:
    """Per-dimension profile (metrics named ``dimension:<name>``), grouped horizontal bars per
    model with CI whiskers; a missing value has no bar and is labelled "n/a".
    Returns {"dimensions": [...], "series": {model: {"value", "ci_low", "ci_high"}}}."""
    docs = {m: _lookup(metrics_files, m, benchmark) for m in models}
    dims: list[str] = []
    for doc in docs.values():
        for name in ((doc or {}).get("metrics") or {}):
            if name.startswith(prefix) and name not in dims:
                dims.append(name)
    series = {}
    for m in models:
        triples = [_value(docs[m], d) for d in dims]
        series[m] = {"value": [t[0] for t in triples], "ci_low": [t[1] for t in triples],
                     "ci_high": [t[2] for t in triples]}
    labels = [d[len(prefix):] for d in dims]
    height = max(2.5, 0.25 * len(dims) * max(1, len(models)) + 1.2)
    fig, ax = plt.subplots(figsize=(7.5, height))
    if not dims:
        ax.text(0.5, 0.5, f"no '{prefix}*' metrics for {benchmark} in the given models",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    else:
        width = 0.8 / max(1, len(models))
        for j, m in enumerate(models):
            s = series[m]
            ys = [i + (j - (len(models) - 1) / 2) * width for i in range(len(dims))]
            present = [i for i, v in enumerate(s["value"]) if not math.isnan(v)]
            xerr_lo = [s["value"][i] - s["ci_low"][i] if not math.isnan(s["ci_low"][i]) else 0
                       for i in present]
            xerr_hi = [s["ci_high"][i] - s["value"][i] if not math.isnan(s["ci_high"][i]) else 0
                       for i in present]
            bars = ax.barh([ys[i] for i in present], [s["value"][i] for i in present],
                           height=width, label=m, xerr=[xerr_lo, xerr_hi] if present else None,
                           capsize=2)
            for i, v in enumerate(s["value"]):
                if math.isnan(v):
                    ax.text(0.0, ys[i], " n/a", va="center", fontsize=7,
                            color=bars.patches[0].get_facecolor() if bars.patches else "black")
        ax.set_yticks(range(len(dims)))
        ax.set_yticklabels(labels)
        ax.invert_yaxis()
        ax.set_xlabel("score")
        ax.legend(fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"{benchmark}: per-dimension profile")
    _save(fig, out_png, demo)
    return {"dimensions": labels, "series": series}
