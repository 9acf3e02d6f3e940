"""Figures for the report (matplotlib, Agg backend). Missing values are gaps, never zeros.

Each function writes a PNG and returns the data it plotted (so tests and the report can check
exactly what is drawn): the robustness curves (every benchmark's primary metric against
post-training size, with the untrained model as a reference and significant differences marked),
the per-dimension profiles and the model x benchmark overview."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..io import ensure_parent  # noqa: E402
from .stats import load_metrics_file  # noqa: E402

DEMO_STAMP = "DEMO run: numbers exercise the pipeline, no evidence"


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


def _kind(kind: str | None):
    """The benchmark kind (its display metadata), or None for an unknown or missing kind."""
    from ..evaluation.kinds import get_kind

    try:
        return get_kind(kind) if kind else None
    except ValueError:
        return None


def metric_label(metric: str | None, kind: str | None = None) -> str:
    """A metric's name for people: the kind's label for it, else the raw key made readable."""
    if not metric:
        return "score"
    if metric.startswith("dimension:"):
        return metric.split(":", 1)[1]
    k = _kind(kind)
    return (k.metric_labels if k else {}).get(metric) or metric.replace("_", " ")


def benchmark_title(benchmark: str, kind: str | None) -> str:
    k = _kind(kind)
    name = k.display_name if k else ""
    same = name and name.lower().replace(" ", "_") == benchmark.lower()
    return benchmark if not name or same else f"{benchmark} ({name})"


def gate_flag(metrics_files: dict, benchmark: str) -> str | None:
    """'judge gate failed' / 'judge unvalidated' for a judged benchmark whose judge did not pass the
    judge gate (the metrics files' judge_gate), None otherwise: figures never show such numbers
    without saying so."""
    for per in metrics_files.values():
        path = per.get(benchmark)
        if path and Path(path).exists():
            g = load_metrics_file(path).get("judge_gate")
            if isinstance(g, dict) and g.get("status") not in (None, "passed"):
                return "judge gate failed" if g["status"] == "failed" else "judge unvalidated"
    return None


def read_comparisons(path: str | None) -> list[dict]:
    """Rows of results/stats/comparisons.tsv ([] when there is none)."""
    if not path or not Path(path).exists():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t"))


def _significant_pairs(rows: list[dict], benchmark: str, metric: str | None) -> dict[tuple[str, str], dict]:
    """(model_a, model_b) -> row, for the comparisons of this benchmark's metric that are
    significant after the configured correction (the `significant` column)."""
    out = {}
    for r in rows:
        if r.get("benchmark") == benchmark and r.get("metric") == metric and r.get("significant") == "true":
            out[(r["model_a"], r["model_b"])] = r
    return out


def _panel_grid(n: int, width: float, height: float, ncols_max: int = 3):
    ncols = max(1, min(ncols_max, n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_axis_off()
    return fig, flat[:max(n, 1)]


def _say(ax, text: str) -> None:
    """An empty panel that says why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _legend_entries(axes) -> tuple[list, list[str]]:
    """One legend entry per label across all panels, in first-seen order."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    return handles, labels


def _robustness_panel(ax, metrics_files: dict, arms: list[str], xs: list[int], benchmark: str,
                      kind: str | None, metric: str | None, references: dict[str, str],
                      comparisons: list[dict]) -> dict:
    # sizes are drawn evenly spaced (they often grow geometrically); the ticks name them
    pos = list(range(len(xs)))
    series: dict[str, dict[str, list[float]]] = {}
    resolved = metric
    missing = []
    ref_data = {}
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
        line, = ax.plot(pos, vals, marker="o", label=arm)
        ax.fill_between(pos, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
        # whiskers too, so a point between two gaps still shows its interval
        ok = [i for i in range(len(xs)) if not (math.isnan(vals[i]) or math.isnan(lows[i])
                                                  or math.isnan(highs[i]))]
        if ok:
            ax.errorbar([pos[i] for i in ok], [vals[i] for i in ok],
                        yerr=[[vals[i] - lows[i] for i in ok], [highs[i] - vals[i] for i in ok]],
                        fmt="none", ecolor=line.get_color(), capsize=3, linewidth=1)
    for base in dict.fromkeys(references.values()):
        v, lo, hi = _value(_lookup(metrics_files, base, benchmark), metric)
        ref_data[base] = {"value": v, "ci_low": lo, "ci_high": hi}
        if math.isnan(v):
            missing.append(base)
            continue
        ax.axhline(v, color="0.35", linestyle="--", linewidth=1, label=f"{base} (untrained)")
        if not (math.isnan(lo) or math.isnan(hi)):
            ax.axhspan(lo, hi, color="0.5", alpha=0.12, linewidth=0)
    # significant differences between two plotted arms at the same size: a star above the pair
    sig_rows = _significant_pairs(comparisons, benchmark, resolved)
    marks = []
    for i, a in enumerate(arms):
        for b in arms[i + 1:]:
            for k, n in enumerate(xs):
                ma, mb = (a, b) if n == 0 else (f"{a}.post{n}", f"{b}.post{n}")
                row = sig_rows.get((ma, mb)) or sig_rows.get((mb, ma))
                if row is None:
                    continue
                tops = [series[x]["ci_high"][k] if not math.isnan(series[x]["ci_high"][k])
                        else series[x]["value"][k] for x in (a, b)]
                tops = [t for t in tops if not math.isnan(t)]
                y = min(1.0, max(tops) + 0.04) if tops else 0.95
                ax.annotate("*", (pos[k], y), ha="center", va="bottom", fontsize=14, fontweight="bold")
                marks.append({"x": n, "model_a": row["model_a"], "model_b": row["model_b"],
                              "p_holm": row.get("p_holm") or None, "p_value": row.get("p_value") or None})
    ax.set_ylim(0, 1.08)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xticks(pos)
    ax.set_xticklabels([str(n) for n in xs])
    ax.set_xlim(-0.3, len(xs) - 0.7)
    ax.set_xlabel("post-training samples (0 = the arm itself)")
    ax.set_ylabel(metric_label(resolved, kind))
    flag = gate_flag(metrics_files, benchmark)
    ax.set_title(benchmark_title(benchmark, kind) + (f"\n[{flag.upper()}: not evidence]" if flag else ""),
                 fontsize=10, color="firebrick" if flag else "black")
    ax.grid(alpha=0.3)
    if missing:
        ax.text(0.01, 0.01, "missing (gap): " + ", ".join(missing), transform=ax.transAxes,
                fontsize=7, va="bottom")
    return {"x": xs, "metric": resolved, "series": series, "reference": ref_data,
            "significant": marks, "missing": missing, "gate_flag": flag}


def robustness_curves(metrics_files: dict[str, dict[str, str]], arms: list[str],
                      posttrain_sizes: list[int], benchmarks: dict[str, str], out_png: str, *,
                      references: dict[str, str] | None = None, comparisons: list[dict] | None = None,
                      metric: str | None = None, alpha: float | None = None,
                      demo: bool = False) -> dict:
    """One panel per benchmark (name -> kind): score (0-1) vs number of post-training samples
    (0 = the arm itself, n = ``{arm}.post{n}``), one line per arm with its bootstrap band; the
    untrained model of each arm (``references``: arm -> base model) as a dashed line with its
    band; a star where a comparison of two plotted arms at that size is significant (the
    comparisons table's `significant` column, i.e. after the configured correction).
    Returns {benchmark: {"x", "metric", "series", "reference", "significant", "missing"}}."""
    xs = [0] + sorted(int(n) for n in posttrain_sizes)
    refs = {a: b for a, b in (references or {}).items() if a in arms}
    names = list(benchmarks) if arms else []
    fig, axes = _panel_grid(len(names), 4.6, 3.6)
    out = {}
    for ax, bench in zip(axes, names):
        out[bench] = _robustness_panel(ax, metrics_files, arms, xs, bench, benchmarks[bench], metric,
                                       refs, comparisons or [])
    if not names:
        _say(axes[0], "no post-trained arm in this run (posttrain.arms)" if not arms else "no judged benchmark to plot")
    handles, labels = _legend_entries(axes)
    marks = [m for d in out.values() for m in d["significant"]]
    if marks:
        from matplotlib.lines import Line2D

        which = "Holm-corrected p" if any(m["p_holm"] for m in marks) else "p (uncorrected)"
        handles.append(Line2D([], [], linestyle="none", marker="$*$", color="black", markersize=9))
        labels.append(f"arms differ at this size: {which} < {alpha if alpha is not None else 'alpha'}")
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.01), frameon=False)
    fig.suptitle("Robustness to post-training (primary metric of each benchmark; bands: 95% bootstrap CI)",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if handles else 0, 1, 0.96))
    _save(fig, out_png, demo)
    return out


def robustness_curve(metrics_files: dict[str, dict[str, str]], arms: list[str],
                     posttrain_sizes: list[int], benchmark: str, metric: str | None,
                     out_png: str, *, demo: bool = False, kind: str | None = None,
                     references: dict[str, str] | None = None,
                     comparisons: list[dict] | None = None, alpha: float | None = None) -> dict:
    """robustness_curves for one benchmark; returns its panel's data."""
    return robustness_curves(metrics_files, arms, posttrain_sizes, {benchmark: kind}, out_png,
                             references=references, comparisons=comparisons, metric=metric,
                             alpha=alpha, demo=demo)[benchmark]


def _profile_panel(ax, docs: dict, models: list[str], benchmark: str, kind: str | None, prefix: str) -> dict:
    dims: list[str] = []
    for doc in docs.values():
        for name in ((doc or {}).get("metrics") or {}):
            if name.startswith(prefix) and name not in dims:
                dims.append(name)
    series = {}
    for m in models:
        triples = [_value(docs[m], d) for d in dims]
        ns = []
        for d in dims:
            entry = (((docs[m] or {}).get("metrics") or {}).get(d) or {}) if docs[m] and docs[m].get("status", "ok") == "ok" else {}
            ns.append(entry.get("n"))
        series[m] = {"value": [t[0] for t in triples], "ci_low": [t[1] for t in triples],
                     "ci_high": [t[2] for t in triples], "n": ns}
    labels = [d[len(prefix):] for d in dims]
    gates = [(d or {}).get("judge_gate") for d in docs.values()]
    flag = next((g.get("status") for g in gates if isinstance(g, dict) and g.get("status") not in (None, "passed")), None)
    ax.set_title(benchmark_title(benchmark, kind) + (f"\n[JUDGE {flag.upper()}: not evidence]" if flag else ""),
                 fontsize=10, color="firebrick" if flag else "black")
    if not dims:
        _say(ax, f"no '{prefix}*' metrics for {benchmark} in the given models")
        return {"dimensions": labels, "series": series}
    width = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        s = series[m]
        ys = [i + (j - (len(models) - 1) / 2) * width for i in range(len(dims))]
        present = [i for i, v in enumerate(s["value"]) if not math.isnan(v)]
        lo = [s["value"][i] - s["ci_low"][i] if not math.isnan(s["ci_low"][i]) else 0 for i in present]
        hi = [s["ci_high"][i] - s["value"][i] if not math.isnan(s["ci_high"][i]) else 0 for i in present]
        bars = ax.barh([ys[i] for i in present], [s["value"][i] for i in present], height=width * 0.9,
                       label=m, alpha=0.85)
        color = bars.patches[0].get_facecolor() if bars.patches else "black"
        if present:  # whiskers in black on top of the bars, so they show on any colour
            ax.errorbar([s["value"][i] for i in present], [ys[i] for i in present], xerr=[lo, hi],
                        fmt="none", ecolor="black", elinewidth=1.1, capsize=2.5, capthick=1.1, zorder=3)
        for i, v in enumerate(s["value"]):
            n = s["n"][i]
            if math.isnan(v):
                ax.text(0.005, ys[i], " n/a", va="center", fontsize=6.5, color=color)
            else:
                right = s["ci_high"][i] if not math.isnan(s["ci_high"][i]) else v
                ax.text(right + 0.015, ys[i], f"n={n}" if n is not None else "n=?", va="center",
                        fontsize=6.5, color="0.25")
    ax.set_yticks(range(len(dims)))
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("dimension score (mean judge verdict; whiskers: 95% bootstrap CI; n = questions)")
    ax.grid(axis="x", alpha=0.3)
    return {"dimensions": labels, "series": series}


def dimension_profiles(metrics_files: dict[str, dict[str, str]], models: list[str],
                       benchmarks: dict[str, str], out_png: str, *, prefix: str = "dimension:",
                       demo: bool = False) -> dict:
    """One panel per dimension-scored benchmark (name -> kind): per-dimension scores
    (``dimension:<name>`` metrics) as grouped horizontal bars per model with CI whiskers and the
    number of questions behind each bar; a missing value has no bar and is labelled "n/a".
    Returns {benchmark: {"dimensions": [...], "series": {model: {"value", "ci_low", "ci_high", "n"}}}}."""
    names = list(benchmarks)
    panels = {}
    heights = []
    for b in names:
        docs = {m: _lookup(metrics_files, m, b) for m in models}
        nd = len({k for d in docs.values() for k in ((d or {}).get("metrics") or {}) if k.startswith(prefix)})
        panels[b] = docs
        heights.append(max(1.6, 0.16 * nd * max(1, len(models)) + 0.8))
    fig, axes = plt.subplots(max(1, len(names)), 1, figsize=(9, sum(heights) + 1.0 if heights else 3),
                             squeeze=False, gridspec_kw={"height_ratios": heights or [1]})
    axes = [a[0] for a in axes]
    out = {}
    for ax, b in zip(axes, names):
        out[b] = _profile_panel(ax, panels[b], models, b, benchmarks[b], prefix)
    if not names:
        _say(axes[0], "no dimension-scored benchmark in the config")
    handles, labels = _legend_entries(axes)
    if handles:  # outside the axes, so it never covers a bar
        fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=8,
                   title="model", title_fontsize=8, frameon=False)
    fig.suptitle("Per-dimension profiles", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    _save(fig, out_png, demo)
    return out


def dimension_profile(metrics_files: dict[str, dict[str, str]], models: list[str],
                      benchmark: str, out_png: str, *, prefix: str = "dimension:",
                      demo: bool = False, kind: str | None = None) -> dict:
    """dimension_profiles for one benchmark; returns its panel's data."""
    return dimension_profiles(metrics_files, models, {benchmark: kind}, out_png, prefix=prefix,
                              demo=demo)[benchmark]


def overview(metrics_files: dict[str, dict[str, str]], models: list[str], benchmarks: dict[str, str],
             out_png: str, *, demo: bool = False) -> dict:
    """Model x benchmark heat map of each benchmark's primary metric (0-1 colour scale), each cell
    with its value and 95% CI; a missing value is a grey "n/a" cell.
    Returns {"models", "benchmarks", "metrics": {benchmark: metric}, "value": [[...]], "ci_low", "ci_high"}."""
    import numpy as np

    names = list(benchmarks)
    val = np.full((len(models), len(names)), np.nan)
    lo, hi = val.copy(), val.copy()
    primary: dict[str, str | None] = {b: None for b in names}
    for i, m in enumerate(models):
        for j, b in enumerate(names):
            doc = _lookup(metrics_files, m, b)
            if doc is not None and primary[b] is None:
                primary[b] = doc.get("primary_metric")
            val[i, j], lo[i, j], hi[i, j] = _value(doc, None)
    fig, ax = plt.subplots(figsize=(1.25 * max(3, len(names)) + 2.5, 0.42 * max(3, len(models)) + 1.8))
    # the colour scale is 0-1: a column whose metric leaves it (a probe margin in nats/token) is
    # printed on white instead of being painted with a misleading colour
    unscaled = [j for j in range(len(names)) if np.any((val[:, j] < 0) | (val[:, j] > 1))]
    shown = val.copy()
    shown[:, unscaled] = np.nan
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for j in unscaled:
        ax.add_patch(plt.Rectangle((j - 0.5, -0.5), 1, len(models), facecolor="white", edgecolor="0.7"))
    for i in range(len(models)):
        for j in range(len(names)):
            v = val[i, j]
            if math.isnan(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="0.3")
                continue
            ci = "" if math.isnan(lo[i, j]) else f"\n[{lo[i, j]:.2f}, {hi[i, j]:.2f}]"
            ax.text(j, i, f"{v:.2f}{ci}", ha="center", va="center", fontsize=6.5,
                    color="white" if v < 0.6 and j not in unscaled else "black")
    flags = {b: gate_flag(metrics_files, b) for b in names}
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([f"{b}\n{metric_label(primary[b], benchmarks[b])}" + (f"\n[{flags[b]}]" if flags[b] else "")
                        for b in names], fontsize=7, rotation=30, ha="right")
    for lab, b in zip(ax.get_xticklabels(), names):
        if flags[b]:
            lab.set_color("firebrick")
    ax.set_yticks(range(len(models)))
    ax.set_yticklabels(models, fontsize=8)
    ax.set_title("Primary metric of each benchmark per model (value, 95% CI; colour: 0-1 metrics only)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    _save(fig, out_png, demo)
    return {"models": list(models), "benchmarks": names, "metrics": primary, "value": val.tolist(),
            "ci_low": lo.tolist(), "ci_high": hi.tolist(), "gate_flags": flags}


COMPARISON_LABELS = {"own": "{a} - {c}\non {probe} (own)", "other": "{a} - {c}\non {probe} (control's)",
                     "arm_vs_base": "{a} - {b}\non {probe}", "control_vs_base": "{c} - {b}\non {probe}"}


def manipulation_figure(rows: list[dict], out_png: str, *, alpha: float = 0.05, demo: bool = False,
                        kinds: dict[str, str] | None = None) -> dict:
    """The manipulation check (``doctune.analysis.manipulation``): one panel per pair of document arm and
    control, each of its four differences of the probe margin as a point with its CI (zero line:
    no difference), stars where the Holm-adjusted p is below alpha, the verdict in words below.
    ``kinds`` ({probe benchmark: kind}) names the metric as the kind does.
    Returns {pair: {"labels", "diff", "ci_low", "ci_high", "significant", "verdict"}}."""
    import textwrap

    pairs: dict[tuple[str, str], dict] = {}
    for r in rows:
        key = (r["arm"], r["control"])
        d = pairs.setdefault(key, {"labels": [], "diff": [], "ci_low": [], "ci_high": [], "significant": [],
                                   "verdict": None, "metric": r.get("metric"), "kind": (kinds or {}).get(r["probe"])})
        if r["row_type"] == "verdict":
            d["verdict"] = r.get("verdict")
            continue
        base = r["model_b"] if r["comparison"].endswith("_vs_base") else None
        d["labels"].append(COMPARISON_LABELS[r["comparison"]].format(a=r["arm"], c=r["control"], b=base,
                                                                     probe=r["probe"]))
        nan = float("nan")
        d["diff"].append(nan if r.get("diff") is None else r["diff"])
        d["ci_low"].append(nan if r.get("ci_low") is None else r["ci_low"])
        d["ci_high"].append(nan if r.get("ci_high") is None else r["ci_high"])
        d["significant"].append(bool(r.get("significant")))
    n = max(1, len(pairs))
    fig, axes = plt.subplots(n, 1, figsize=(8.5, 3.9 * n), squeeze=False)
    for ax, ((a, c), d) in zip([x[0] for x in axes], pairs.items()):
        ys = list(range(len(d["labels"])))[::-1]
        colors = ["tab:blue", "tab:orange", "0.45", "0.45"][:len(ys)]
        for y, v, lo, hi, sig, col in zip(ys, d["diff"], d["ci_low"], d["ci_high"], d["significant"], colors):
            if math.isnan(v):
                ax.text(0, y, "not computed", ha="center", va="center", fontsize=8, color="0.4")
                continue
            ax.errorbar([v], [y], xerr=[[v - lo], [hi - v]] if not math.isnan(lo) else None, fmt="o",
                        color=col, capsize=4)
            ax.annotate(f"{v:+.3g}" + (" *" if sig else ""), (v, y), xytext=(0, 7), textcoords="offset points",
                        ha="center", fontsize=8, fontweight="bold" if sig else "normal")
        ax.axvline(0, color="0.3", linewidth=1)
        ax.set_yticks(ys)
        ax.set_yticklabels(d["labels"], fontsize=8)
        ax.set_ylim(-0.7, len(ys) - 0.3)
        ax.set_xlabel(f"difference in {metric_label(d['metric'], d['kind'])} (95% bootstrap CI; * Holm p < {alpha:g})",
                      fontsize=8)
        ax.set_title(f"Manipulation check: {a} against its matched control, {c}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        if d["verdict"]:
            ax.text(0, -0.3, "\n".join(textwrap.wrap(d["verdict"], 120)), transform=ax.transAxes, fontsize=7,
                    va="top", ha="left")
    if not pairs:
        _say(axes[0][0], "no pair of document arms with probes")
    fig.tight_layout(h_pad=6)
    _save(fig, out_png, demo)
    return {f"{a}|{c}": d for (a, c), d in pairs.items()}
