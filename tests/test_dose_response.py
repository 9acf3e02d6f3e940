"""Dose-response (doctune.analysis.dose_response): the slope permutation test against an exact
enumeration written out here, Page's L against scipy and a hand-computed case, the x scale, the
table on synthetic metrics files (values recomputed here independently), the summary rows and
the figure."""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from doctune.analysis import dose_response as dr

FAST = {"n_bootstrap": 300, "n_permutations": 400, "seed": 3}


# ----------------------------------------------------------------------------- tests of the tests
def _slope(xs, means):
    return np.polyfit(np.asarray(xs, float), np.asarray(means, float), 1)[0]


@pytest.mark.parametrize("scores", [
    [[0.1, 0.5, 0.4], [0.2, 0.1, 0.9], [0.3, 0.8, 0.7]],     # continuous
    [[0, 1, 1], [0, 0, 1], [1, 1, 1]],                       # binary with ties (third item constant)
])
def test_slope_permutation_p_is_the_exact_enumeration(scores):
    xs = [1.0, 2.0, 4.0]
    obs = abs(_slope(xs, np.mean(scores, axis=0)))
    hits = 0
    perms = list(itertools.permutations(range(3)))
    for choice in itertools.product(perms, repeat=3):          # 6^3 within-item permutations
        permuted = [[row[j] for j in order] for row, order in zip(scores, choice)]
        hits += abs(_slope(xs, np.mean(permuted, axis=0))) >= obs - 1e-12
    expected = hits / len(perms) ** 3
    items = [{f"q{i}": scores[i][j] for i in range(3)} for j in range(3)]
    t = dr.trend_test(xs, items, n_permutations=100, exact_max=16, seed_key=("t",), seed=0, level=0.95,
                      n_bootstrap=200)
    assert t["status"] == "ok" and "permutation (exact" in t["test"]
    assert t["p_trend"] == pytest.approx(expected, abs=1e-12)
    assert t["slope"] == pytest.approx(_slope(xs, np.mean(scores, axis=0)))
    assert t["n"] == 3 and t["n_left_out"] == 0


def test_monte_carlo_slope_p_is_close_to_exact_and_seeded():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(7, 3)) + np.array([0, 0.3, 0.5])
    items = [{f"q{i}": y[i, j] for i in range(7)} for j in range(3)]
    kw = dict(seed_key=("k",), seed=1, level=0.95, n_bootstrap=200)
    exact = dr.trend_test([0, 1, 2], items, n_permutations=10, exact_max=24, **kw)
    mc = dr.trend_test([0, 1, 2], items, n_permutations=20000, exact_max=None, **kw)
    assert "permutation (exact" in exact["test"] and "permutation (Monte Carlo" in mc["test"]
    assert mc["p_trend"] == pytest.approx(exact["p_trend"], abs=0.015)
    assert dr.trend_test([0, 1, 2], items, n_permutations=20000, exact_max=None, **kw) == mc
    # bootstrap CI brackets the slope
    assert exact["ci_low"] < exact["slope"] < exact["ci_high"]


def test_page_hand_computed():
    # ranks within items: (1, 2, 3) and (3, 1, 2): column sums 4, 3, 5, so L = 1*4 + 2*3 + 3*5 = 25,
    # and with the order reversed 3*4 + 2*3 + 1*5 = 23. One item of 3 untied ranks has L in
    # {10: 1/6, 11: 2/6, 13: 2/6, 14: 1/6}; two items: P(L >= 25) = (1 + 2 + 2 + 4 + 2 + 2)/36 = 13/36
    # and P(L >= 23) = 1 - P(L <= 22) = 1 - (1 + 2 + 2 + 4)/36 = 27/36.
    res = dr.page_test(np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]]))
    assert res["L"] == 25 and res["L_decreasing"] == 23 and res["method"] == "exact"
    assert res["p_increasing"] == pytest.approx(13 / 36)
    assert res["p_decreasing"] == pytest.approx(27 / 36)
    assert res["p"] == pytest.approx(26 / 36)


@pytest.mark.parametrize("m,k,method,ties", [(6, 4, "exact", False), (5, 3, "exact", True),
                                               (25, 5, "asymptotic", True), (10, 9, "asymptotic", False),
                                               (8, 5, "auto", False), (30, 4, "auto", False)])
def test_page_matches_scipy_both_directions(m, k, method, ties):
    rng = np.random.default_rng(m * k)
    data = rng.normal(size=(m, k)) + np.linspace(0, 0.6, k)
    if ties:
        data = np.round(data)
    ours = dr.page_test(data, method=method)
    up = sps.page_trend_test(data, method=method)
    down = sps.page_trend_test(data, method=method, predicted_ranks=list(range(k, 0, -1)))
    assert ours["L"] == pytest.approx(up.statistic) and ours["method"] == up.method
    assert ours["L_decreasing"] == pytest.approx(down.statistic)
    assert ours["p_increasing"] == pytest.approx(up.pvalue, rel=1e-9, abs=1e-12)
    assert ours["p_decreasing"] == pytest.approx(down.pvalue, rel=1e-9, abs=1e-12)
    assert ours["p"] == pytest.approx(min(1, 2 * min(up.pvalue, down.pvalue)), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("values,scale", [
    ([1, 10], "log10"), ([2, 4, 20], "log10"), ([2, 8, 19], "linear"), ([0, 10, 100], "linear"),
    ([-1, 10], "linear"), ([0.5, 0.05], "log10"), (["low", "high"], "ordinal"), ([1, "a"], "ordinal"),
    ([True, False], "ordinal"),
])
def test_x_scale(values, scale):
    got, xs = dr.x_scale(values)
    assert got == scale
    if scale == "log10":
        assert xs == pytest.approx([math.log10(v) for v in values])
    elif scale == "ordinal":
        assert xs == [1.0 + i for i in range(len(values))]
    else:
        assert xs == [float(v) for v in values]


# ----------------------------------------------------------------------------- the table
def _write(root: Path, model: str, bench: str, items: dict | None, value=None, status="ok", gate=None) -> str:
    p = root / "metrics" / model / f"{bench}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    if status != "ok":
        p.write_text(json.dumps({"status": status, "reason": "the job failed"}))
        return str(p)
    v = float(np.mean(list(items.values()))) if items else value
    doc = {"status": "ok", "primary_metric": "margin",
           "metrics": {"margin": {"value": v, "ci_low": v - 0.05, "ci_high": v + 0.05,
                                  "n": len(items) if items else 20}}}
    if items:
        doc["items"] = {"margin": items}
    if gate:
        doc["judge_gate"] = {"status": gate, "note": f"judge gate {gate}: kappa below the bar"}
    p.write_text(json.dumps(doc))
    return str(p)


def _state(root: Path, arm: str, tokens: list[int]) -> list[str]:
    out = []
    for i, t in enumerate(tokens):
        p = root / "models" / arm / f"seed{i}" / "trainer_state.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"result": {"tokens": t}}))
        out.append(str(p))
    return out


N_ITEMS = 12


def _scores(shift: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {f"q{i}": float(shift + 0.1 * rng.normal()) for i in range(N_ITEMS)}


@pytest.fixture
def setup(tmp_path):
    """Sweep docs: n_docs 2, 8, 32 (log scale) with a control and post-training at 50; sweep grid:
    lr x style (linear x ordinal), no control. Benchmark 'hs' has no per-item scores; the point
    doc~n_docs=32.post50 has no metrics file, doc~n_docs=8.post50 failed."""
    root = tmp_path
    files: dict[str, dict[str, str]] = {}
    truth: dict[str, dict[str, float]] = {}

    def add(model, shift, seed, bench="probe", drop=None):
        sc = _scores(shift, seed)
        if drop:
            sc.pop(drop)
        truth[model] = sc
        files.setdefault(model, {})[bench] = _write(root, model, bench, sc)

    add("base", 0.0, 1)
    add("control", 0.02, 2)
    add("control.post50", 0.01, 3)
    for i, n in enumerate([2, 8, 32]):
        arm = f"doc~n_docs={n}"
        add(arm, 0.05 * (i + 1), 10 + i, drop="q0" if n == 8 else None)
        files[arm]["hs"] = _write(root, arm, "hs", None, value=0.4 + 0.01 * i, gate="failed")
    files["base"]["hs"] = _write(root, "base", "hs", None, value=0.38)
    files["control"]["hs"] = _write(root, "control", "hs", None, value=0.39)
    add("doc~n_docs=2.post50", 0.03, 20)
    files["doc~n_docs=8.post50"] = {"probe": _write(root, "doc~n_docs=8.post50", "probe", None, status="failed")}
    files["doc~n_docs=32.post50"] = {"probe": str(root / "metrics" / "nowhere.json")}
    grid_points = []
    for i, (lr, style) in enumerate(itertools.product([1e-4, 3e-4], ["plain", "story"])):
        arm = f"doc2~lr={lr},style={style}"
        add(arm, 0.1 * i, 30 + i)
        grid_points.append({"arm": arm, "values": {"lr": lr, "style": style}})
    states = {"doc~n_docs=2": _state(root, "doc~n_docs=2", [1000, 1200]),
              "doc~n_docs=8": _state(root, "doc~n_docs=8", [4000]),
              "doc~n_docs=32": [str(root / "missing_state.json")]}
    plan = [{"name": "docs", "arm": "doc", "keys": ["n_docs"], "control": "control", "base": "base",
             "points": [{"arm": f"doc~n_docs={n}", "values": {"n_docs": n}} for n in (2, 8, 32)]},
            {"name": "grid", "arm": "doc2", "keys": ["lr", "style"], "control": None, "base": "base",
             "points": grid_points}]
    out = root / "results" / "stats" / "dose_response.tsv"
    rows = dr.run_dose_response(plan, files, states, FAST, str(out), posttrain_sizes=[50])
    return {"rows": rows, "out": out, "truth": truth, "files": files, "root": root}


def _holm(ps):
    """Holm's step-down adjustment, written out for the test."""
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    out, running = [None] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        out[i] = running
    return out


def _pick(rows, **kw):
    return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]


def test_table_trend_rows(setup):
    rows, truth = setup["rows"], setup["truth"]
    [t] = _pick(rows, sweep="docs", row_type="trend", benchmark="probe", stage="trained")
    assert t["status"] == "ok" and t["scale"] == "log10" and t["metric"] == "margin" and t["series"] == ""
    shared = [f"q{i}" for i in range(1, N_ITEMS)]     # q0 is not scored at n_docs = 8
    means = [np.mean([truth[f"doc~n_docs={n}"][q] for q in shared]) for n in (2, 8, 32)]
    assert t["slope"] == pytest.approx(_slope(np.log10([2, 8, 32]), means))
    assert t["n"] == N_ITEMS - 1 and t["n_missing"] == 1
    assert t["slope_ci_low"] < t["slope"] < t["slope_ci_high"]
    assert 0 < t["p_trend"] <= 1 and t["page_L"] is not None
    y = np.array([[truth[f"doc~n_docs={n}"][q] for n in (2, 8, 32)] for q in shared])
    up = sps.page_trend_test(y)
    assert t["page_L"] == pytest.approx(up.statistic)
    # the post stage has a missing and a failed point: the trend is missing, with both reasons
    [tp] = _pick(rows, sweep="docs", row_type="trend", benchmark="probe", stage="post50")
    assert tp["status"] == "missing" and tp["slope"] is None and tp["p_trend"] is None
    assert "does not exist" in tp["note"] and "failed" in tp["note"]
    # no per-item scores: no test, the slope of the values is descriptive only
    [th] = _pick(rows, sweep="docs", row_type="trend", benchmark="hs")
    assert th["status"] == "no_test" and "no per-item scores" in th["note"] and th["p_trend"] is None
    assert th["slope"] == pytest.approx(_slope(np.log10([2, 8, 32]), [0.40, 0.41, 0.42]))
    # the judge gate of a judged benchmark is carried, its failure named first
    for r in _pick(rows, sweep="docs", benchmark="hs"):
        assert r["judge_gate"] == "failed" and r["note"].startswith("judge gate failed")
    assert all(r["judge_gate"] is None for r in _pick(rows, benchmark="probe"))
    # Holm over the sweep's trends
    for sweep in ("docs", "grid"):
        trends = [r for r in _pick(rows, sweep=sweep, row_type="trend") if r["p_trend"] is not None]
        assert trends
        for r, ph in zip(trends, _holm([r["p_trend"] for r in trends])):
            assert r["p_trend_holm"] == pytest.approx(ph)


def test_table_point_rows(setup):
    rows, truth = setup["rows"], setup["truth"]
    pts = _pick(rows, sweep="docs", row_type="point", benchmark="probe", stage="trained")
    assert [r["x"] for r in pts] == [2, 8, 32] and [r["model"] for r in pts] == [f"doc~n_docs={n}" for n in (2, 8, 32)]
    p2 = pts[0]
    assert p2["value"] == pytest.approx(np.mean(list(truth["doc~n_docs=2"].values())))
    assert p2["base_value"] == pytest.approx(np.mean(list(truth["base"].values())))
    assert p2["control_value"] == pytest.approx(np.mean(list(truth["control"].values())))
    d = [truth["doc~n_docs=2"][q] - truth["control"][q] for q in truth["control"]]
    assert p2["diff"] == pytest.approx(np.mean(d)) and p2["diff_ci_low"] < p2["diff"] < p2["diff_ci_high"]
    assert p2["control"] == "control" and p2["status"] == "ok"
    # tokens: mean over the arm's seeds; an unreadable state leaves it empty with a note
    assert p2["train_tokens"] == 1100 and pts[1]["train_tokens"] == 4000
    assert pts[2]["train_tokens"] is None and "training tokens" in pts[2]["note"]
    # post stage: compared with control.post50; missing points are empty, never 0
    post = _pick(rows, sweep="docs", row_type="point", benchmark="probe", stage="post50")
    assert post[0]["control"] == "control.post50" and post[0]["model"] == "doc~n_docs=2.post50"
    assert post[0]["status"] == "ok" and post[0]["diff"] is not None
    for r in post[1:]:
        assert r["status"] == "missing" and r["value"] is None and r["diff"] is None and r["note"]
    # Holm over the sweep's point-vs-control comparisons
    comps = [r for r in _pick(rows, sweep="docs", row_type="point") if r["p_value"] is not None]
    assert len(comps) == 7     # probe: 3 trained + 1 post; hs: 3 (z-tests from the CIs)
    for r, ph in zip(comps, _holm([r["p_value"] for r in comps])):
        assert r["p_holm"] == pytest.approx(ph)


def test_table_grid_keys_and_series(setup):
    rows = setup["rows"]
    trends = _pick(rows, sweep="grid", row_type="trend", benchmark="probe")
    assert {(r["key"], r["series"], r["scale"]) for r in trends} == {
        ("lr", "style=plain", "linear"), ("lr", "style=story", "linear"),
        ("style", "lr=0.0001", "ordinal"), ("style", "lr=0.0003", "ordinal")}
    assert all(r["status"] == "ok" and r["page_L"] is None for r in trends)   # two points: no Page's L
    [r] = _pick(trends, key="style", series="lr=0.0003")
    truth = setup["truth"]
    a, b = truth["doc2~lr=0.0003,style=plain"], truth["doc2~lr=0.0003,style=story"]
    assert r["slope"] == pytest.approx(np.mean([b[q] - a[q] for q in a]))   # ordinal: x = 1, 2
    pts = _pick(rows, sweep="grid", row_type="point")
    assert all(p["diff"] is None and p["control"] is None and "no control" in p["note"] for p in pts)
    assert not _pick(rows, sweep="grid", stage="post50")


def test_file_round_trip_sidecar_and_summary(setup):
    out = setup["out"]
    back = dr.read_dose_response(str(out))
    assert [r["row_type"] for r in back] == [r["row_type"] for r in setup["rows"]]
    assert list(back[0]) == dr.COLUMNS
    for r, s in zip(back, setup["rows"]):
        for k in ("slope", "p_trend", "value", "diff", "n", "x", "status", "note"):
            if isinstance(s[k], float):
                assert r[k] == pytest.approx(s[k], rel=1e-8)
            else:
                assert r[k] == s[k], k
    assert (out.parent.parent / "provenance" / "stats" / "dose_response.tsv.json").exists()
    from doctune.analysis.summary import COLUMNS as SUMMARY_COLUMNS

    srows = dr.summary_rows(str(out))
    assert all(set(r) <= set(SUMMARY_COLUMNS) for r in srows)
    slope = [r for r in srows if r["metric"] == "dose:slope[n_docs]" and r["benchmark"] == "probe"]
    assert slope[0]["model"] == "sweep:docs" and slope[0]["p_value"] is not None
    assert "log10(n_docs)" in slope[0]["note"] and "Page" in slope[0]["note"]
    vs = [r for r in srows if r["metric"] == "dose:vs_control"]
    assert len(vs) == len({(r["model"], r["benchmark"]) for r in vs})   # one row per point
    assert any("train tokens 1.1k" in r["note"] for r in vs)


def test_demo_banner(tmp_path, setup):
    plan = [{"name": "s", "arm": "doc", "keys": ["n_docs"], "control": None, "base": None,
             "points": [{"arm": f"doc~n_docs={n}", "values": {"n_docs": n}} for n in (2, 8)]}]
    out = tmp_path / "results" / "demo.tsv"
    dr.run_dose_response(plan, setup["files"], {}, FAST, str(out), demo=True)
    assert out.read_text().startswith("# DEMO")
    assert dr.read_dose_response(str(out))


# ----------------------------------------------------------------------------- the figure
def _is_png(path: Path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figure_with_and_without_missing_data(setup, tmp_path):
    rows = dr.read_dose_response(str(setup["out"]))
    for sweep in ("docs", "grid"):
        png = tmp_path / "plots" / f"dose_{sweep}.png"
        dr.dose_response_figure(rows, sweep, str(png), kinds={"probe": "probe"})
        assert _is_png(png)
    complete = [r for r in rows if r["stage"] == "trained"]
    png = tmp_path / "plots" / "complete.png"
    dr.dose_response_figure(complete, "docs", str(png), demo=True)
    assert _is_png(png)
    nothing = [dict(r, value=None, ci_low=None, ci_high=None, status="missing", note="metrics file gone")
               for r in rows if r["sweep"] == "docs"]
    png = tmp_path / "plots" / "empty.png"
    dr.dose_response_figure(nothing, "docs", str(png))
    dr.dose_response_figure([], "none", str(tmp_path / "plots" / "none.png"))
    assert _is_png(png) and _is_png(tmp_path / "plots" / "none.png")
