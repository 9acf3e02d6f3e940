"""Dose-response: how a score moves along a swept training setting (e.g. ``n_docs`` in [2, 4, 8]).

A config sweep expands into arms named like ``doc~n_docs=2``, trained and evaluated like any arm;
the pipeline hands this module a ``plan`` (one entry per sweep: name, arm, keys, control, base and
the points in grid order), the metrics files of every reported model and the arms' trainer states.

Output ``results/stats/dose_response.tsv`` (COLUMNS; read it back with ``read_dose_response``) and
its provenance sidecar. For each sweep, each benchmark of its points (its primary metric), each
stage (``trained``, and ``postN`` where the points' ``ARM.postN`` models were evaluated) and each
key with two or more values, per *series* (one combination of the other keys' values; ``""`` with
one key):

* ``row_type = point``: the point's value of the key (``x``), its model, the estimate with its CI
  and n, the arm's training tokens (``train_tokens``, mean ``result.tokens`` of its trainer
  states), the untrained base model's and the control's value on the same benchmark (the control
  is ``CONTROL.postN`` at a post stage), and the paired comparison point - control
  (``doctune.analysis.stats.compare_one``: mean per-item difference, bootstrap CI, permutation p),
  Holm-corrected over the sweep's distinct point-vs-control comparisons (stages x benchmarks x
  points; a point listed under two keys is one comparison).
* ``row_type = trend``: the least-squares slope of the score on x (``scale``: ``log10`` of the
  value when all values are > 0 and span a decade, max/min >= 10; the value itself, ``linear``;
  the position in the list, ``ordinal``, when a value is not a number) on the items scored at every
  point of the series (``n``; ``n_missing`` = items left out). With a balanced design the slope is
  the mean of the per-item slopes, so its CI is a percentile bootstrap over items (paired across
  points). ``p_trend`` is a within-item permutation test of the slope: under "no trend" the k
  scores of one item are exchangeable, so each item's scores are permuted among its points (exact
  when the distribution of the statistic can be enumerated, Monte Carlo otherwise). Unlike a
  rank test it keeps its exact level with the heavy ties of binary (0/1) scores: an item scored
  the same everywhere simply does not move the statistic. ``page_L``/``page_p``: Page's L, the
  standard rank test for a monotone trend across ordered repeated measures (items as blocks,
  ranks within each item, ties averaged), two-sided p = min(1, 2 min(p_increasing,
  p_decreasing)), exact or normal approximation chosen as ``scipy.stats.page_trend_test`` does
  (three or more points only). ``p_trend_holm``: Holm over the sweep's trend rows (benchmarks x
  stages, and keys x series where there are several).

Columns (COLUMNS): identity (row_type, sweep, arm, key, series, stage, benchmark, metric, status,
x, scale, model); the point's estimate (value, ci_low, ci_high, n, n_missing, train_tokens); the
references (control, control_value/_ci_low/_ci_high, base, base_value/_ci_low/_ci_high); the
point - control comparison (diff, diff_ci_low, diff_ci_high, p_value, p_holm); the trend (slope,
slope_ci_low, slope_ci_high, p_trend, p_trend_holm, page_L, page_p; n and n_missing count its
items); then test, judge_gate and note. Empty cells are values that do not apply or could not be
computed.

Every row has sweep, arm (the sweep's arm), key, series, stage, benchmark, metric, status
(``ok`` / ``missing`` / ``no_test``), note and ``judge_gate`` (the judge gate's verdict from the
metrics files of a judged benchmark; a judge that did not pass is named first in the note). A
point whose metrics file is missing or not ``ok`` has status ``missing``, empty values (never 0)
and the reason in the note; a trend with a missing point is ``missing``; a trend whose points have
no per-item scores is ``no_test`` (its slope is then the slope of the point values, without CI or
p). Each trend seeds its bootstrap and permutations from ``stats.seed`` and its own identity
(``stats._rng``), so its numbers do not depend on the other rows.
"""
from __future__ import annotations

import functools
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..io import DataError, atomic_write_text

COLUMNS = ["row_type", "sweep", "arm", "key", "series", "stage", "benchmark", "metric", "status",
           "x", "scale", "model", "value", "ci_low", "ci_high", "n", "n_missing", "train_tokens",
           "control", "control_value", "control_ci_low", "control_ci_high",
           "base", "base_value", "base_ci_low", "base_ci_high",
           "diff", "diff_ci_low", "diff_ci_high", "p_value", "p_holm",
           "slope", "slope_ci_low", "slope_ci_high", "p_trend", "p_trend_holm", "page_L", "page_p",
           "test", "judge_gate", "note"]
_FLOATS = {"value", "ci_low", "ci_high", "train_tokens", "control_value", "control_ci_low", "control_ci_high",
           "base_value", "base_ci_low", "base_ci_high", "diff", "diff_ci_low", "diff_ci_high", "p_value",
           "p_holm", "slope", "slope_ci_low", "slope_ci_high", "p_trend", "p_trend_holm", "page_L", "page_p"}
_INTS = {"n", "n_missing"}
TRAINED = "trained"
# the exact permutation distribution is built by convolution; above these sizes it is Monte Carlo
_MAX_EXACT_K = 8
_MAX_OUTER = 2 ** 23


# ----------------------------------------------------------------------------- x scale
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) \
        and math.isfinite(float(v))


def x_scale(values: list) -> tuple[str, list[float]]:
    """(scale, x used for the slope) of a key's values: ``log10`` when all are numbers > 0 with
    max/min >= 10, ``linear`` for other numbers, ``ordinal`` (positions 1..k in list order) when
    any value is not a number."""
    if not all(_is_number(v) for v in values):
        return "ordinal", [float(i + 1) for i in range(len(values))]
    v = [float(x) for x in values]
    if min(v) > 0 and max(v) / min(v) >= 10:
        return "log10", [math.log10(x) for x in v]
    return "linear", v


# ----------------------------------------------------------------------------- Page's L
@functools.lru_cache(maxsize=64)
def _page_null(k: int, m: int) -> tuple[int, np.ndarray]:
    """(smallest L, probabilities of L = smallest, smallest+1, ...) for m blocks of k untied ranks."""
    pred = np.arange(1, k + 1)
    row = np.array([int(pred @ np.array(p)) for p in itertools.permutations(range(1, k + 1))])
    lo = int(row.min())
    one = np.bincount(row - lo) / len(row)
    dist = np.array([1.0])
    for _ in range(m):
        dist = np.convolve(dist, one)
    return m * lo, dist


def page_test(data: np.ndarray, method: str = "auto") -> dict:
    """Page's L for increasing columns of ``data`` (items x ordered points; ranks within items,
    ties averaged) with one-sided p-values for an increasing and a decreasing trend and the
    two-sided p. ``method``: 'exact' (the null distribution of untied ranks, by convolution;
    P(L0 >= floor(L)) as scipy computes it), 'asymptotic' (normal, E0 = mk(k+1)^2/4,
    V0 = mk^2(k+1)(k^2-1)/144) or 'auto' (scipy's choice)."""
    from scipy import stats as sps

    data = np.asarray(data, float)
    m, k = data.shape
    if m < 2 or k < 3:
        raise ValueError("Page's L needs at least 2 items and 3 points")
    if method == "auto":
        method = "asymptotic" if k > 8 or (m > 12 and k > 3) or m > 20 else "exact"
    colsums = sps.rankdata(data, axis=1).sum(axis=0)
    pred = np.arange(1, k + 1)
    ls = {"increasing": float(pred @ colsums), "decreasing": float(pred[::-1] @ colsums)}
    ps = {}
    for direction, L in ls.items():
        if method == "exact":
            lo, dist = _page_null(k, m)
            start = int(L) - lo
            ps[direction] = float(min(1.0, dist[max(start, 0):].sum()))
        elif method == "asymptotic":
            e0 = m * k * (k + 1) ** 2 / 4
            v0 = m * k ** 2 * (k + 1) * (k ** 2 - 1) / 144
            ps[direction] = float(sps.norm.sf((L - e0) / math.sqrt(v0)))
        else:
            raise ValueError(f"method must be 'auto', 'exact' or 'asymptotic', got {method!r}")
    return {"L": ls["increasing"], "L_decreasing": ls["decreasing"], "p_increasing": ps["increasing"],
            "p_decreasing": ps["decreasing"], "p": min(1.0, 2 * min(ps.values())), "method": method}


# ----------------------------------------------------------------------------- slope test
def _merge(values: np.ndarray, weights: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Equal values (to 1e-12 of scale) merged, their weights added."""
    keys, inv = np.unique(np.round(values / scale, 12), return_inverse=True)
    return keys * scale, np.bincount(inv.ravel(), weights=weights)


def slope_permutation_p(y: np.ndarray, c: np.ndarray, n_permutations: int, exact_max: int | None,
                        rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided within-item permutation p of the statistic sum_i sum_j c_j y_ij (the slope times
    the number of items; c = slope weights of the points): each item's scores permuted among its
    points, all k! orders equally likely under no trend.

    Exact (all (k!)^n permutations, enumerated as a convolution of the items' distributions with
    equal sums merged) while the running sum takes at most 2^exact_max distinct values and
    k <= 8; otherwise (or with exact_max None) Monte Carlo, p = (1 + #{|T*| >= |T|}) / (1 + B)."""
    y = np.asarray(y, float)
    c = np.asarray(c, float)
    y = y[np.ptp(y, axis=1) > 0] if len(y) else y       # constant items never move the statistic
    if len(y) == 0:
        return 1.0, "exact (every item scored the same at every point)"
    m, k = y.shape
    obs = abs(float((y @ c).sum()))
    scale = float(np.abs(y).max(axis=1).sum() * np.abs(c).sum()) or 1.0
    tol = 1e-9 * scale
    if exact_max is not None and k <= _MAX_EXACT_K:
        perms = np.array(list(itertools.permutations(range(k))))
        support, weights = np.zeros(1), np.ones(1)
        for row in y:
            v, w = _merge(row[perms] @ c, np.full(len(perms), 1 / len(perms)), scale)
            if len(support) * len(v) > _MAX_OUTER:
                break
            support, weights = _merge((support[:, None] + v[None, :]).ravel(),
                                      (weights[:, None] * w[None, :]).ravel(), scale)
            if len(support) > 2 ** exact_max:
                break
        else:
            p = float(weights[np.abs(support) >= obs - tol].sum())
            return min(1.0, p), f"exact, {math.factorial(k)}^{m} within-item permutations"
    count, done = 0, 0
    chunk = max(1, 2_000_000 // (m * k))
    while done < n_permutations:
        b = min(chunk, n_permutations - done)
        order = np.argsort(rng.random((b, m, k)), axis=2)
        t = np.abs((np.take_along_axis(np.broadcast_to(y, (b, m, k)), order, axis=2) @ c).sum(axis=1))
        count += int(np.sum(t >= obs - tol))
        done += b
    return (1 + count) / (1 + n_permutations), f"Monte Carlo, {n_permutations} within-item permutations"


def _weights(xs: list[float]) -> np.ndarray:
    x = np.asarray(xs, float)
    d = x - x.mean()
    sxx = float(d @ d)
    if sxx == 0:
        raise ValueError("the trend needs at least two distinct x values")
    return d / sxx


def trend_test(xs: list[float], items: list[dict[str, float]], *, n_permutations: int,
               exact_max: int | None, seed_key: tuple, seed: int, level: float,
               n_bootstrap: int) -> dict:
    """The trend of per-item scores across ordered points (``xs``: the points' x, ``items``: each
    point's {item_id: score}), on the items scored at every point: the least-squares slope, its
    bootstrap CI over items, the within-item permutation p (``p_trend``; ``exact_max`` as in
    ``slope_permutation_p``, None for Monte Carlo only) and Page's L (three or more points).
    Returns {status (ok / no_test), slope, ci_low, ci_high, p_trend, page_L, page_p,
    page_p_increasing, page_p_decreasing, n, n_left_out, test, note}."""
    from .stats import _rng, bootstrap_ci_paired

    c = _weights(xs)
    union = set().union(*(set(d) for d in items)) if items else set()
    shared = sorted(set.intersection(*(set(d) for d in items))) if items else []
    out: dict[str, Any] = {"status": "no_test", "slope": None, "ci_low": None, "ci_high": None,
                           "p_trend": None, "page_L": None, "page_p": None, "page_p_increasing": None,
                           "page_p_decreasing": None, "n": len(shared), "n_left_out": len(union) - len(shared),
                           "test": None, "note": None}
    notes = []
    if out["n_left_out"]:
        notes.append(f"{out['n_left_out']} item(s) not scored at every point left out")
    if len(shared) < 2:
        out["note"] = "; ".join(notes + [f"{len(shared)} item(s) scored at every point: no test"])
        return out
    y = np.array([[d[i] for d in items] for i in shared])
    s = y @ c                                   # per-item slopes; their mean is the slope
    out["slope"] = float(s.mean())
    out["ci_low"], out["ci_high"] = bootstrap_ci_paired(s, n_bootstrap, level, _rng(seed, *seed_key, "bootstrap"))
    out["p_trend"], how = slope_permutation_p(y, c, n_permutations, exact_max, _rng(seed, *seed_key, "permutation"))
    tests = [f"slope: within-item permutation ({how})"]
    if len(xs) >= 3:
        pg = page_test(y)
        out.update(page_L=pg["L"], page_p=pg["p"], page_p_increasing=pg["p_increasing"],
                   page_p_decreasing=pg["p_decreasing"])
        tests.append(f"Page's L ({pg['method']})")
        notes.append(f"Page's one-sided p: increasing {pg['p_increasing']:.3g}, decreasing {pg['p_decreasing']:.3g}")
    else:
        notes.append("Page's L needs 3 or more points")
    out.update(status="ok", test="; ".join(tests), note="; ".join(notes) or None)
    return out


# ----------------------------------------------------------------------------- the table
def _tokens(states: dict[str, list[str]], arm: str) -> tuple[float | None, str | None]:
    from .manipulation import training_tokens

    files = [f for f in states.get(arm) or [] if Path(f).exists()]
    if not files:
        return None, f"training tokens of {arm} unknown (no trainer_state.json)"
    try:
        return training_tokens(files), None
    except DataError as exc:
        return None, f"training tokens of {arm} unknown ({exc})"


def _join(*parts: str | None) -> str | None:
    return "; ".join(p for p in parts if p) or None


def _primary(docs: list) -> str | None:
    return next((d["primary_metric"] for d in docs if isinstance(d, dict) and d.get("primary_metric")), None)


def _vkey(v: Any) -> str:
    return f"{type(v).__name__}:{v!r}"


def _sweep_rows(sweep: dict, files, metrics_files: dict, states: dict, cfg: dict,
                posttrain_sizes: list[int]) -> list[dict]:
    from .stats import MetricData, compare_one, holm, metric_data

    name, keys = sweep["name"], list(sweep["keys"])
    control, base = sweep.get("control"), sweep.get("base")
    points = list(sweep["points"])
    stages = [(TRAINED, "")] + [(f"post{n}", f".post{n}") for n in posttrain_sizes
                                if any(f"{p['arm']}.post{n}" in metrics_files for p in points)]
    tokens = {p["arm"]: _tokens(states, p["arm"]) for p in points}
    family = f"dose:{name}"

    # per (stage, benchmark): the reference models and each point's data and comparison
    cells: dict[tuple[str, str], dict] = {}
    for stage, suffix in stages:
        benches: list[str] = []
        for p in points:
            benches += [b for b in metrics_files.get(p["arm"] + suffix) or {} if b not in benches]
        for bench in benches:
            ctrl = f"{control}{suffix}" if control else None
            docs = {p["arm"]: files.get(p["arm"] + suffix, bench) for p in points}
            ref_docs = {m: files.get(m, bench) for m in (ctrl, base) if m}
            metric = _primary(list(docs.values()) + list(ref_docs.values()))
            if metric is None:
                reasons = [d for d in docs.values() if isinstance(d, str)]
                why = _join(*(reasons or ["no primary_metric in the points' metrics files"]))

                def md_of(_doc: Any, _model: str, why=why) -> MetricData:
                    return MetricData(missing=why)
            else:
                def md_of(doc: Any, model: str, metric=metric) -> MetricData:
                    return metric_data(doc, metric, model)
            ref = {m: md_of(d, m) for m, d in ref_docs.items()}
            cell = {"metric": metric, "control": ctrl, "ref": ref, "ref_docs": ref_docs, "points": {}}
            for p in points:
                model = p["arm"] + suffix
                md = md_of(docs[p["arm"]], model)
                cmp = None
                if ctrl:
                    cmp = compare_one(bench, metric or "", model, ctrl, family, md, ref[ctrl], cfg)
                cell["points"][p["arm"]] = {"model": model, "md": md, "doc": docs[p["arm"]], "cmp": cmp}
            cells[(stage, bench)] = cell
    comparisons = [pt["cmp"] for cell in cells.values() for pt in cell["points"].values() if pt["cmp"]]
    if cfg["correction"] == "holm":
        for r, ph in zip(comparisons, holm([r["p_value"] for r in comparisons])):
            r["p_holm"] = ph

    rows: list[dict] = []
    for key in keys:
        distinct: list = []
        for p in points:
            v = p["values"][key]
            if _vkey(v) not in [_vkey(d) for d in distinct]:
                distinct.append(v)
        if len(distinct) < 2:
            continue
        scale, xs = x_scale(distinct)
        order = sorted(range(len(distinct)), key=lambda i: xs[i]) if scale != "ordinal" else list(range(len(distinct)))
        x_of = {_vkey(distinct[i]): xs[i] for i in order}
        rank = {_vkey(distinct[i]): j for j, i in enumerate(order)}
        series: dict[str, list[dict]] = {}
        for p in points:
            label = ",".join(f"{k2}={p['values'][k2]}" for k2 in keys if k2 != key)
            series.setdefault(label, []).append(p)
        for (stage, bench), cell in cells.items():
            for label, pts in series.items():
                pts = sorted(pts, key=lambda p: rank[_vkey(p["values"][key])])
                rows += _series_rows(sweep, tokens, cfg, key, label, stage, bench, cell, pts, scale, x_of)
    trends = [r for r in rows if r["row_type"] == "trend"]
    if cfg["correction"] == "holm":
        for r, ph in zip(trends, holm([r["p_trend"] for r in trends])):
            r["p_trend_holm"] = ph
    return rows


def _series_rows(sweep: dict, tokens: dict, cfg: dict, key: str, label: str, stage: str, bench: str, cell: dict,
                 pts: list[dict], scale: str, x_of: dict) -> list[dict]:
    """The point rows and the trend row of one series of one key at one stage of one benchmark."""
    from .stats import _flag_gate as flag_gate

    name, arm, base = sweep["name"], sweep["arm"], sweep.get("base")
    metric, ctrl, ref = cell["metric"], cell["control"], cell["ref"]
    common: dict[str, Any] = {c: None for c in COLUMNS}
    common.update(sweep=name, arm=arm, key=key, series=label, stage=stage, benchmark=bench, metric=metric or "",
                  scale=scale, control=ctrl, base=base)
    for prefix, model in (("control", ctrl), ("base", base)):
        md = ref.get(model) if model else None
        if md is not None and not md.missing:
            common.update({f"{prefix}_value": md.value, f"{prefix}_ci_low": md.ci_low, f"{prefix}_ci_high": md.ci_high})
    ref_notes = [f"{what} {ref[m].missing}" for what, m in (("control:", ctrl), ("base:", base))
                 if m and ref[m].missing]
    rows = []
    for p in pts:
        pt = cell["points"][p["arm"]]
        md, cmp = pt["md"], pt["cmp"]
        tok, tok_note = tokens[p["arm"]]
        row = dict(common, row_type="point", x=p["values"][key], model=pt["model"], train_tokens=tok)
        if md.missing:
            row.update(status="missing", note=_join(md.missing, tok_note))
        else:
            row.update(value=md.value, ci_low=md.ci_low, ci_high=md.ci_high, n=md.n, n_missing=md.n_missing)
            notes = [tok_note]
            if cmp is not None:
                row.update(diff=cmp["diff"], diff_ci_low=cmp["ci_low"], diff_ci_high=cmp["ci_high"],
                           p_value=cmp["p_value"], p_holm=cmp["p_holm"], test=cmp["test"])
                notes.insert(0, cmp["note"] if cmp["status"] == "ok" else f"vs control: {cmp['note']}")
            else:
                notes.append("no control in this sweep: no comparison")
            row.update(status="ok", note=_join(*notes, *ref_notes))
        flag_gate(row, pt["doc"], *(cell["ref_docs"].get(m) for m in (ctrl,) if m))
        rows.append(row)
    trend = dict(common, row_type="trend", model=f"sweep:{name}")
    xs = [x_of[_vkey(p["values"][key])] for p in pts]
    where = f"{key} = {', '.join(str(p['values'][key]) for p in pts)}; x scale {scale}"
    mds = [cell["points"][p["arm"]]["md"] for p in pts]
    if len(pts) < 2:
        trend.update(status="no_test", note=_join(f"one point only ({where})"))
    elif any(md.missing for md in mds):
        trend.update(status="missing", note=_join(*(f"{cell['points'][p['arm']]['model']}: {md.missing}"
                                                    for p, md in zip(pts, mds) if md.missing), where))
    elif any(not md.items for md in mds):
        without = [cell["points"][p["arm"]]["model"] for p, md in zip(pts, mds) if not md.items]
        vals = [md.value for md in mds]
        if all(v is not None for v in vals):
            trend["slope"] = float(np.asarray(vals) @ _weights(xs))
        trend.update(status="no_test", note=_join(f"no per-item scores for {', '.join(without)}: slope of the point "
                                                  "values, no CI or test", where))
    else:
        t = trend_test(xs, [md.items for md in mds], n_permutations=cfg["n_permutations"],
                       exact_max=cfg["permutation_exact_max"], seed_key=(name, key, label, stage, bench, metric),
                       seed=cfg["seed"], level=cfg["ci_level"], n_bootstrap=cfg["n_bootstrap"])
        trend.update(status=t["status"], slope=t["slope"], slope_ci_low=t["ci_low"], slope_ci_high=t["ci_high"],
                     p_trend=t["p_trend"], page_L=t["page_L"], page_p=t["page_p"], n=t["n"],
                     n_missing=t["n_left_out"], test=t["test"], note=_join(t["note"], where))
    flag_gate(trend, *(cell["points"][p["arm"]]["doc"] for p in pts))
    rows.append(trend)
    return rows


def run_dose_response(plan: list[dict], metrics_files: dict[str, dict[str, str]], states: dict[str, list[str]],
                      stats_cfg: dict, out_tsv: str, *, posttrain_sizes: list[int] = (),
                      demo: bool = False) -> list[dict]:
    """Write results/stats/dose_response.tsv (module docstring) and its provenance sidecar;
    returns its rows. Read it with ``read_dose_response`` (a demo run starts with a ``# DEMO`` line)."""
    from .stats import DEMO_BANNER, _Files, format_tsv, resolve_stats_cfg

    cfg = resolve_stats_cfg({k: v for k, v in (stats_cfg or {}).items() if k not in ("posttrain_sizes", "demo")})
    files = _Files(metrics_files)
    sizes = sorted({int(n) for n in posttrain_sizes})
    rows = [r for sweep in plan for r in _sweep_rows(sweep, files, metrics_files, states, cfg, sizes)]
    if cfg["correction"] != "holm":
        for r in rows:
            if r["p_value"] is not None or r["p_trend"] is not None:
                r["note"] = _join(r["note"], "no multiple-comparison correction")
    atomic_write_text(out_tsv, format_tsv(rows, COLUMNS, DEMO_BANNER if demo else None))
    from ..workflow.provenance import write_sidecar

    inputs = sorted({p for per in metrics_files.values() for p in per.values() if Path(p).exists()}
                    | {f for fs in states.values() for f in fs if Path(f).exists()})
    write_sidecar(out_tsv, inputs, {"plan": plan, "stats": stats_cfg, "posttrain_sizes": sizes, "demo": demo},
                  rule="dose_response")
    return rows


def _cell(k: str, v: str) -> Any:
    if v == "":
        return None
    if k in _FLOATS:
        return float(v)
    if k in _INTS:
        return int(float(v))
    if k == "x":
        for typ in (int, float):
            try:
                return typ(v)
            except ValueError:
                pass
    return v


def read_dose_response(path: str) -> list[dict]:
    """The rows of a dose_response.tsv: numbers as float (n, n_missing as int; x as int, float or
    text), empty cells as None."""
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if not ln.startswith("#")]
    return [{k: _cell(k, v) for k, v in r.items()} for r in csv.DictReader(lines, delimiter="\t")]


def _fmt_p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def _short(v: float | None) -> str:
    """A signed number in about three significant digits, without exponents in the usual range."""
    if v is None:
        return "n/a"
    if v == 0 or 1e-3 <= abs(v) < 100:
        return format(v, "+#.3g")
    return f"{v:+.0f}" if abs(v) < 1e6 else f"{v:+.2e}"


def _fmt_tokens(t: float | None) -> str:
    if t is None:
        return "?"
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(t) >= div:
            return f"{t / div:.3g}{unit}"
    return f"{t:.0f}"


def summary_rows(path: str) -> list[dict]:
    """The dose-response rows of results/summary.tsv (summary.COLUMNS): per trend, model
    ``sweep:NAME``, metric ``dose:slope[KEY]``, value = slope with its CI, p_value = p_trend;
    per distinct point (stage, benchmark, model), metric ``dose:vs_control``, value = the point
    minus the control with its CI and paired p."""
    out, seen = [], set()
    rows = read_dose_response(path)
    for r in sorted(rows, key=lambda r: r["row_type"] != "trend"):     # trends first, then the points
        where = f"stage {r['stage']}" + (f", series {r['series']}" if r.get("series") else "")
        if r["row_type"] == "trend":
            unit = {"log10": f"per log10({r['key']})", "linear": f"per unit of {r['key']}",
                    "ordinal": f"per step of {r['key']} (ordinal)"}.get(r.get("scale") or "", "")
            note = _join(f"sweep {r['sweep']}: slope of {r['metric']} {unit}; {where}",
                         f"p Holm {_fmt_p(r.get('p_trend_holm'))}; Page's L p {_fmt_p(r.get('page_p'))}"
                         if r["status"] == "ok" else None, r.get("note"))
            out.append({"model": r["model"], "benchmark": r["benchmark"], "metric": f"dose:slope[{r['key']}]",
                        "value": r.get("slope"), "ci_low": r.get("slope_ci_low"), "ci_high": r.get("slope_ci_high"),
                        "n": r.get("n"), "n_missing": r.get("n_missing"), "status": r["status"], "note": note,
                        "p_value": r.get("p_trend"), "judge_gate": r.get("judge_gate"), "primary": False})
            continue
        ident = (r["sweep"], r["stage"], r["benchmark"], r["model"])
        if ident in seen:
            continue
        seen.add(ident)
        ok = r.get("diff") is not None
        note = _join(f"{r['model']} - {r.get('control') or 'no control'} ({r['key']} = {r['x']}; {where}; "
                     f"train tokens {_fmt_tokens(r.get('train_tokens'))})",
                     f"p Holm {_fmt_p(r.get('p_holm'))}" if ok else None, r.get("note"))
        out.append({"model": r["model"], "benchmark": r["benchmark"], "metric": "dose:vs_control",
                    "value": r.get("diff"), "ci_low": r.get("diff_ci_low"), "ci_high": r.get("diff_ci_high"),
                    "n": r.get("n"), "n_missing": r.get("n_missing"), "status": "ok" if ok else (
                        "missing" if r["status"] == "missing" else "no_test"),
                    "note": note, "p_value": r.get("p_value"), "judge_gate": r.get("judge_gate"), "primary": False})
    return out


# ----------------------------------------------------------------------------- the figure
def _nan(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _dose_panel(ax, prs: list[dict], trs: list[dict], kind: str | None, alpha: float, multi_key: bool) -> list[str]:
    """One benchmark x key: a line per (stage, series) with CI bars, base/control reference lines,
    tokens beside the points, trend statistics in the title. Returns the models marked with a star."""
    from .plots import benchmark_title, metric_label, plt

    bench, key = prs[0]["benchmark"], prs[0]["key"]
    scale = prs[0].get("scale")
    metric = next((r["metric"] for r in prs if r.get("metric")), None)
    gate = next((r["judge_gate"] for r in prs + trs if r.get("judge_gate") not in (None, "passed")), None)
    head = benchmark_title(bench, kind) + (f" - {key}" if multi_key else "")
    if gate:
        head += f"\n[JUDGE {str(gate).upper()}: not evidence]"
    import textwrap

    lines = []   # trend statistics, one per (stage, series)
    per = {"log10": "/decade", "ordinal": "/step"}.get(scale or "", "/unit")
    for t in trs:
        who = t["stage"] + (f", {t['series']}" if t.get("series") else "")
        if t["status"] == "ok":
            lines.append(f"{who}: slope{per} {_short(t['slope'])} [{_short(t['slope_ci_low'])}, "
                         f"{_short(t['slope_ci_high'])}]")
            text = (f"    p {_fmt_p(t.get('p_trend'))}"
                    + (f" (Holm {_fmt_p(t['p_trend_holm'])})" if t.get("p_trend_holm") is not None else "")
                    + (f", Page's L p {_fmt_p(t['page_p'])}" if t.get("page_p") is not None else "")
                    + f", n = {t.get('n')}")
        elif t["status"] == "missing":
            text = f"{who}: no trend (a point is missing)"
        elif t.get("slope") is not None:
            text = f"{who}: slope{per} {_short(t['slope'])} of the values, no test (no per-item scores)"
        else:
            text = f"{who}: no trend test ({(t.get('note') or '').split(';')[0]})"
        lines += textwrap.wrap(text, 84, subsequent_indent="    ")
    title = head + ("\n" + "\n".join(lines) if lines else "")
    if all(r.get("value") is None for r in prs):
        ax.set_title(title, fontsize=8.5, color="firebrick" if gate else "black")
        why = next((r.get("note") for r in prs if r.get("note")), "no values")
        from .plots import _say
        _say(ax, "no data for this panel:\n" + "\n".join(textwrap.wrap(str(why), 50)[:4]))
        return []
    xs_raw: list = []
    for r in prs:
        if r["x"] not in xs_raw:
            xs_raw.append(r["x"])
    if scale == "ordinal":
        pos = {str(x): i for i, x in enumerate(xs_raw)}
        to_plot = lambda x: float(pos[str(x)])  # noqa: E731
    else:
        to_plot = float
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in prs:
        groups.setdefault((r["stage"], r.get("series") or ""), []).append(r)
    stage_color: dict[str, str] = {}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    missing, labelled_tokens, no_tokens, stars = [], set(), [], []
    n = len(groups)
    for j, ((stage, series), rs) in enumerate(groups.items()):
        color = colors[j % len(colors)]
        stage_color.setdefault(stage, color)
        off = (j - (n - 1) / 2) * (0.08 if scale == "ordinal" else 0.04)
        px = [to_plot(r["x"]) * (10 ** off if scale == "log10" else 1) + (off if scale == "ordinal" else 0)
              for r in rs]
        if scale == "linear":
            span = (max(map(float, xs_raw)) - min(map(float, xs_raw))) or 1.0
            px = [to_plot(r["x"]) + off * span / 2 for r in rs]
        v = np.array([_nan(r.get("value")) for r in rs])
        lo = np.array([_nan(r.get("ci_low")) for r in rs])
        hi = np.array([_nan(r.get("ci_high")) for r in rs])
        label = stage + (f", {series}" if series else "")
        ax.plot(px, v, marker="o", color=color, label=label, zorder=3)
        ok = ~(np.isnan(v) | np.isnan(lo) | np.isnan(hi))
        if ok.any():
            ax.errorbar(np.asarray(px)[ok], v[ok], yerr=[v[ok] - lo[ok], hi[ok] - v[ok]], fmt="none", ecolor=color,
                        capsize=3, linewidth=1, zorder=3)
        for x, y, lo_, top, r in zip(px, v, lo, hi, rs):
            if math.isnan(y):
                missing.append(f"{r['model']}")
                continue
            p = r.get("p_holm") if r.get("p_holm") is not None else r.get("p_value")
            if p is not None and p < alpha:
                stars.append(r["model"])
                ax.annotate("*", (x, top if not math.isnan(top) else y), xytext=(0, 1), textcoords="offset points",
                            ha="center", va="bottom", fontsize=13, fontweight="bold", color=color)
            tk = (r["model"].split(".post")[0], r["x"])
            if tk in labelled_tokens:       # once per trained arm, on its first line
                continue
            labelled_tokens.add(tk)
            if r.get("train_tokens") is None:
                no_tokens.append(tk[0])
                continue
            # below-left of the lower whisker: the first line is the leftmost, so nothing else is there
            ax.annotate(f"{_fmt_tokens(r['train_tokens'])} tok", (x, y if math.isnan(lo_) else lo_), xytext=(-2, -2),
                        textcoords="offset points", fontsize=6.5, color="0.25", ha="right", va="top",
                        bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.7},
                        zorder=4)
    first = prs[0]
    if first.get("base_value") is not None:
        ax.axhline(first["base_value"], color="0.35", linestyle="--", linewidth=1,
                   label=f"{first['base']} (untrained base model)", zorder=1)
        if first.get("base_ci_low") is not None and first.get("base_ci_high") is not None:
            ax.axhspan(first["base_ci_low"], first["base_ci_high"], color="0.5", alpha=0.12, linewidth=0, zorder=0)
    seen_ctrl = set()
    for r in prs:
        if r.get("control_value") is None or r["control"] in seen_ctrl:
            continue
        seen_ctrl.add(r["control"])
        color = stage_color.get(r["stage"], "0.2")
        ax.axhline(r["control_value"], color=color, linestyle=":", linewidth=1.4,
                   label=f"{r['control']} (control)", zorder=1)
        if r.get("control_ci_low") is not None and r.get("control_ci_high") is not None:
            ax.axhspan(r["control_ci_low"], r["control_ci_high"], color=color, alpha=0.08, linewidth=0, zorder=0)
    if scale == "log10":
        ax.set_xscale("log")
        ax.minorticks_off()
    if scale == "ordinal":
        ax.set_xticks(range(len(xs_raw)))
        ax.set_xticklabels([str(x) for x in xs_raw])
        ax.set_xlim(-0.5, len(xs_raw) - 0.5)
    else:
        ax.set_xticks([float(x) for x in xs_raw])
        ax.set_xticklabels([str(x) for x in xs_raw])
        lo_x, hi_x = min(map(float, xs_raw)), max(map(float, xs_raw))
        if scale == "log10":
            ax.set_xlim(lo_x / 10 ** 0.12 * (hi_x / lo_x) ** -0.02, hi_x * 10 ** 0.22 * (hi_x / lo_x) ** 0.04)
        else:
            pad = (hi_x - lo_x) * 0.08
            ax.set_xlim(lo_x - pad, hi_x + pad * 2)
    ax.set_xlabel(key + {"log10": " (log scale)", "ordinal": " (ordered categories)"}.get(scale, ""), fontsize=9)
    ax.set_ylabel(metric_label(metric, kind), fontsize=9)
    ax.set_title(title, fontsize=8.5, color="firebrick" if gate else "black")
    ax.margins(y=0.1)
    ax.grid(alpha=0.3)
    def names(what: str, models: list[str]) -> str:
        models = list(dict.fromkeys(models))
        return f"{what}: " + (", ".join(models) if len(models) <= 3 else f"{len(models)} points")

    foot = ([(names("missing (gap)", missing), "firebrick")] if missing else []) + (
        [(names("training tokens unknown", no_tokens), "0.3")] if no_tokens else [])
    for i, (text, color) in enumerate(foot):   # below the x label, where no data can be
        ax.annotate(textwrap.shorten(text, 95, placeholder=" ..."), (0, 0), xycoords="axes fraction",
                    xytext=(0, -34 - 9 * i), textcoords="offset points", fontsize=6.5, va="top", ha="left",
                    color=color)
    return stars


def dose_response_figure(rows: list[dict], sweep: str, out_png: str, *, alpha: float = 0.05, demo: bool = False,
                         kinds: dict[str, str] | None = None) -> None:
    """results/plots/dose_{sweep}.png: one panel per benchmark (and key, when the sweep has
    several): the primary metric against the swept value (log axis when the values span a decade,
    categories for ordinal keys) with CI bars, one line per stage (and series), the untrained base
    (dashed, grey band) and the control (dotted, faint band) as references, training tokens beside
    each point, * where the point differs from the control (Holm p < alpha), the trend's slope,
    p_trend and Page's p in the title. ``kinds`` ({benchmark: kind}) names the metric as the kind does."""
    from .plots import _legend_entries, _panel_grid, _save, _say

    rows = [r for r in rows if r.get("sweep") == sweep]
    points = [r for r in rows if r["row_type"] == "point"]
    keys = list(dict.fromkeys(r["key"] for r in rows))
    panels = list(dict.fromkeys((r["benchmark"], r["key"]) for r in points))
    fig, axes = _panel_grid(len(panels), 5.4, 4.3)
    stars = []
    for ax, (bench, key) in zip(axes, panels):
        prs = [r for r in points if r["benchmark"] == bench and r["key"] == key]
        trs = [r for r in rows if r["row_type"] == "trend" and r["benchmark"] == bench and r["key"] == key]
        stars += _dose_panel(ax, prs, trs, (kinds or {}).get(bench), alpha, len(keys) > 1)
    if not panels:
        _say(axes[0], f"nothing to plot for sweep {sweep!r}\n(no benchmark, or no key with two or more values)")
    handles, labels = _legend_entries(axes)
    if stars:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], linestyle="none", marker="$*$", color="black", markersize=9))
        labels.append(f"differs from the control: Holm p < {alpha:g}")
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.01), frameon=False)
    arm = next((r["arm"] for r in rows if r.get("arm")), "")
    fig.suptitle(f"Dose-response of sweep {sweep}" + (f" (arm {arm})" if arm else "")
                 + ": primary metric per point (bars: 95% CI; 'tok' = training tokens)", fontsize=10.5)
    fig.tight_layout(rect=(0, 0.08 if handles else 0, 1, 0.97))
    _save(fig, out_png, demo)

