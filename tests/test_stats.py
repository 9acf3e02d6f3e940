"""Statistics: each test checked against scipy or a direct computation on hand-made data."""
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from doctune.analysis import stats as S
from doctune.io import DataError


def write_metrics(root, model, bench, metrics, items=None, primary=None, status="ok", reason=None):
    path = root / "results" / "metrics" / model / f"{bench}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"model": model, "benchmark": bench, "kind": "x", "status": status, "reason": reason,
           "primary_metric": primary or (next(iter(metrics)) if metrics else None),
           "metrics": metrics, "items": items or {}, "provenance": {}}
    path.write_text(json.dumps(doc))
    return str(path)


def metric_from_items(items):
    v = list(items.values())
    return {"value": float(np.mean(v)), "ci_low": min(v), "ci_high": max(v), "n": len(v),
            "n_missing": 0}


def read_tsv(path):
    return pd.read_csv(path, sep="\t", comment="#", dtype={"note": str, "test": str})


# ----------------------------------------------------------------------------- primitives
def test_paired_permutation_exact_matches_enumeration_of_all_sign_flips():
    rng = np.random.default_rng(1)
    d = np.round(rng.normal(0.3, 1.0, size=11), 1)
    d[[2, 7]] = 0.0  # zero differences must not change the answer
    n = len(d)
    obs = abs(d.mean())
    count = 0
    for signs in itertools.product([-1, 1], repeat=n):
        if abs(np.dot(signs, d) / n) >= obs - 1e-12:
            count += 1
    direct = count / 2 ** n
    p, how = S.paired_permutation_p(d, 1000, 16, np.random.default_rng(0))
    assert "exact" in how
    assert p == pytest.approx(direct, abs=1e-12)
    assert 0 < p < 1


def test_paired_permutation_monte_carlo_close_to_exact():
    rng = np.random.default_rng(2)
    d = rng.normal(0.4, 1.0, size=17)
    exact, how_e = S.paired_permutation_p(d, 1, 17, np.random.default_rng(0))
    mc, how_m = S.paired_permutation_p(d, 20000, 16, np.random.default_rng(0))
    assert "exact" in how_e and "Monte Carlo" in how_m
    assert mc == pytest.approx(exact, abs=0.01)
    # never exactly 0: (1 + count) / (1 + B)
    big = np.full(30, 1.0) + rng.normal(0, 0.01, 30)
    p0, _ = S.paired_permutation_p(big, 500, 16, np.random.default_rng(0))
    assert p0 == pytest.approx(1 / 501)


def test_unpaired_permutation_exact_matches_enumeration():
    x = np.array([1.0, 0.0, 1.0, 1.0, 0.5])
    y = np.array([0.0, 0.0, 0.5, 1.0])
    pooled = np.concatenate([x, y])
    obs = abs(x.mean() - y.mean())
    hits = tot = 0
    for idx in itertools.combinations(range(9), 5):
        rest = [i for i in range(9) if i not in idx]
        tot += 1
        hits += abs(pooled[list(idx)].mean() - pooled[rest].mean()) >= obs - 1e-12
    p, how = S.unpaired_permutation_p(x, y, 100, 16, np.random.default_rng(0))
    assert "exact" in how and p == pytest.approx(hits / tot)


def test_holm_by_hand():
    adj = S.holm([0.01, 0.04, 0.03, 0.005, None])
    assert adj[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert adj[4] is None
    assert S.holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])
    assert S.holm([0.6, 0.9]) == pytest.approx([1.0, 1.0])


def test_bootstrap_ci_brackets_mean_and_is_seeded():
    d = np.random.default_rng(3).normal(1.0, 1.0, 40)
    lo, hi = S.bootstrap_ci_paired(d, 2000, 0.95, np.random.default_rng(5))
    assert lo < d.mean() < hi
    # about +-1.96 * sd / sqrt(n)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.2)
    assert (lo, hi) == S.bootstrap_ci_paired(d, 2000, 0.95, np.random.default_rng(5))


# ----------------------------------------------------------------------------- config
def test_expand_comparisons_posttrain_and_defaults():
    comps = [{"a": "doc", "b": "instruct", "at_posttrain_sizes": True},
             {"a": "doc", "b": "control", "benchmarks": ["ahb"], "metrics": ["overall_mean"],
              "family": "compassion"}]
    rows = S.expand_comparisons(comps, ["doc", "instruct", "control", "doc.post4",
                                        "instruct.post4"], ["ahb", "hellaswag"], [4])
    assert rows == [("ahb", None, "doc", "instruct", "all"),
                    ("hellaswag", None, "doc", "instruct", "all"),
                    ("ahb", None, "doc.post4", "instruct.post4", "all"),
                    ("hellaswag", None, "doc.post4", "instruct.post4", "all"),
                    ("ahb", "overall_mean", "doc", "control", "compassion")]


@pytest.mark.parametrize("comp, match", [
    ({"a": "doc"}, "missing required key 'b'"),
    ({"a": "doc", "b": "instruct", "benchmark": ["ahb"]}, "unknown key"),
    ({"a": "doc", "b": "nope"}, "'nope' is not one of the configured models"),
    ({"a": "doc", "b": "instruct", "benchmarks": ["mmlu"]}, "unknown benchmark 'mmlu'"),
    ({"a": "doc", "b": "instruct", "at_posttrain_sizes": True}, "'doc.post8'"),
    ({"a": "doc", "b": "doc"}, "same model"),
])
def test_expand_comparisons_errors_name_the_entry(comp, match):
    with pytest.raises(ValueError, match=match) as exc:
        S.expand_comparisons([comp], ["doc", "instruct"], ["ahb"], [8])
    assert "stats.comparisons[0]" in str(exc.value)


@pytest.mark.parametrize("cfg, match", [
    ({"n_permutation": 10}, "unknown key 'n_permutation'"),
    ({"n_bootstrap": 0}, "n_bootstrap"),
    ({"primary_test": "z"}, "primary_test"),
    ({"alpha": 5}, "alpha"),
    ({"correction": "fdr"}, "correction"),
    ({"posttrain_sizes": [0]}, "posttrain_sizes"),
])
def test_stats_cfg_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        S.resolve_stats_cfg(cfg)


def test_stats_cfg_defaults_and_ignored_comparisons():
    cfg = S.resolve_stats_cfg({"comparisons": [], "seed": 3})
    assert cfg["seed"] == 3 and cfg["primary_test"] == "permutation"
    assert cfg["correction"] == "holm" and cfg["permutation_exact_max"] == 16


# ----------------------------------------------------------------------------- end to end
@pytest.fixture
def grid(tmp_path):
    rng = np.random.default_rng(7)
    ids = [str(i) for i in range(12)]
    doc_items = {k: float(rng.integers(0, 2) | (i % 3 == 0)) for i, k in enumerate(ids)}
    ins_items = {k: float(rng.integers(0, 2) & (i % 2)) for i, k in enumerate(ids)}
    ctl_items = dict(list(doc_items.items())[:8])  # partial overlap with doc
    files = {}

    def add(model, bench, path):
        files.setdefault(model, {})[bench] = path

    add("doc", "ahb", write_metrics(tmp_path, "doc", "ahb",
                                    {"overall_mean": metric_from_items(doc_items),
                                     "dimension:A": {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6,
                                                     "n": 5, "n_missing": 0}},
                                    {"overall_mean": doc_items}))
    add("instruct", "ahb", write_metrics(tmp_path, "instruct", "ahb",
                                         {"overall_mean": metric_from_items(ins_items),
                                          "dimension:A": {"value": None, "ci_low": None,
                                                          "ci_high": None, "n": 0,
                                                          "n_missing": 5}},
                                         {"overall_mean": ins_items}))
    add("control", "ahb", write_metrics(tmp_path, "control", "ahb",
                                        {"overall_mean": metric_from_items(ctl_items)},
                                        {"overall_mean": ctl_items}))
    add("doc", "hellaswag", write_metrics(tmp_path, "doc", "hellaswag",
                                          {"acc": {"value": 0.30, "ci_low": 0.25, "ci_high": 0.35,
                                                   "n": 100, "n_missing": 0, "stderr": 0.02}}))
    add("instruct", "hellaswag", write_metrics(tmp_path, "instruct", "hellaswag",
                                               {"acc": {"value": 0.26, "ci_low": 0.21,
                                                        "ci_high": 0.31, "n": 100, "n_missing": 0,
                                                        "stderr": 0.025}}))
    add("doc.post4", "ahb", write_metrics(tmp_path, "doc.post4", "ahb",
                                          {"overall_mean": metric_from_items(doc_items)},
                                          {"overall_mean": doc_items}))
    add("instruct.post4", "ahb", str(tmp_path / "results/metrics/instruct.post4/ahb.json"))
    return tmp_path, files, doc_items, ins_items, ctl_items


def test_run_comparisons_table(grid):
    tmp, files, doc_items, ins_items, ctl_items = grid
    comps = [{"a": "doc", "b": "instruct", "at_posttrain_sizes": True},
             {"a": "doc", "b": "control", "benchmarks": ["ahb"], "family": "control"}]
    out = tmp / "results" / "stats" / "comparisons.tsv"
    rows = S.run_comparisons(comps, files, {"n_bootstrap": 500, "n_permutations": 500, "seed": 1,
                                            "posttrain_sizes": [4]}, str(out))
    df = read_tsv(out)
    assert list(df.columns[:10]) == S.CONTRACT_COLUMNS
    assert list(df.columns) == S.COLUMNS
    assert len(df) == len(rows)
    key = lambda b, m, a, bb: df[(df.benchmark == b) & (df.metric == m) & (df.model_a == a)  # noqa
                                 & (df.model_b == bb)].iloc[0]

    # paired test on AHB overall_mean, compared with scipy
    r = key("ahb", "overall_mean", "doc", "instruct")
    a = np.array([doc_items[k] for k in sorted(doc_items)])
    b = np.array([ins_items[k] for k in sorted(doc_items)])
    assert r.status == "ok" and r.n == 12 and r.n_missing == 0
    assert r["diff"] == pytest.approx((a - b).mean())
    assert r.p_t == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert r.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert r.p_value == r.p_permutation
    assert "paired permutation (exact" in r.test
    assert r.ci_low <= r["diff"] <= r.ci_high

    # dimension:A has no items in either file and a null value for instruct -> missing row
    # default metrics = primary + metrics with items; dimension:A is neither
    assert not (df.metric == "dimension:A").any()

    # z-test from stderrs for lm_eval-style metrics
    r = key("hellaswag", "acc", "doc", "instruct")
    se = math.hypot(0.02, 0.025)
    assert r["diff"] == pytest.approx(0.04)
    assert r.p_value == pytest.approx(2 * sps.norm.sf(0.04 / se))
    assert r.test.startswith("z-test") and "no per-item scores" in r.note
    assert np.isnan(r.p_t) and np.isnan(r.p_permutation)

    # post-training comparison with a missing file: row kept, status missing, no p-values
    r = key("ahb", "overall_mean", "doc.post4", "instruct.post4")
    assert r.status == "missing" and "instruct.post4/ahb.json does not exist" in r.note
    assert r.value_a == pytest.approx(np.mean(list(doc_items.values()))) and np.isnan(r.value_b)
    assert np.isnan(r.p_value) and np.isnan(r.p_holm)
    r = df[(df.model_a == "doc.post4") & (df.benchmark == "hellaswag")].iloc[0]
    assert r.status == "missing" and "no metrics file" in r.note and pd.isna(r.metric)

    # partial overlap: paired on the overlap, said in the note
    r = key("ahb", "overall_mean", "doc", "control")
    assert r.n == 8 and r.n_missing == 4 and "8 shared items" in r.note
    assert r["diff"] == pytest.approx(0.0) and r.p_value == 1.0
    assert r.family == "control"

    # Holm within the default family, computed from the raw p-values
    fam = df[(df.family == "all") & df.p_value.notna()]
    assert list(fam.p_holm) == pytest.approx(S.holm(list(fam.p_value)))
    assert (fam.p_holm >= fam.p_value).all()
    ctl = df[df.family == "control"]
    assert list(ctl.p_holm) == pytest.approx(list(ctl.p_value))  # family of one

    # provenance sidecar next to the results tree
    side = tmp / "results" / "provenance" / "stats" / "comparisons.tsv.json"
    assert side.exists()
    rec = json.loads(side.read_text())
    assert rec["rule"] == "stats" and files["doc"]["ahb"] in rec["inputs"]


def test_explicit_metric_missing_in_one_model(grid):
    tmp, files, *_ = grid
    out = tmp / "c.tsv"
    S.run_comparisons([{"a": "doc", "b": "instruct", "benchmarks": ["ahb"],
                        "metrics": ["dimension:A", "nonexistent"]}], files,
                      {"n_bootstrap": 50, "n_permutations": 50}, str(out))
    df = read_tsv(out)
    assert len(df) == 2 and set(df.status) == {"missing"}
    assert "instruct: dimension:A has no value" in df.iloc[0].note
    assert "metric 'nonexistent' not in" in df.iloc[1].note
    assert df.p_value.isna().all() and df["diff"].isna().all()


def test_unaligned_items_use_unpaired_tests(tmp_path):
    xa = {f"a{i}": v for i, v in enumerate([0.9, 0.8, 0.7, 1.0, 0.95, 0.85])}
    xb = {f"b{i}": v for i, v in enumerate([0.5, 0.6, 0.4, 0.7, 0.55])}
    files = {"m1": {"t": write_metrics(tmp_path, "m1", "t", {"s": metric_from_items(xa)}, {"s": xa})},
             "m2": {"t": write_metrics(tmp_path, "m2", "t", {"s": metric_from_items(xb)}, {"s": xb})}}
    rows = S.compute_comparisons([{"a": "m1", "b": "m2"}], files,
                                 {"n_bootstrap": 300, "n_permutations": 300})
    (r,) = rows
    x, y = np.array(list(xa.values())), np.array(list(xb.values()))
    assert r["test"].startswith("unpaired permutation (exact")
    assert "items do not align" in r["note"]
    assert r["p_t"] == pytest.approx(sps.ttest_ind(x, y, equal_var=False).pvalue)
    assert r["p_wilcoxon"] == pytest.approx(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    assert r["n"] == 11 and r["diff"] == pytest.approx(x.mean() - y.mean())
    assert r["p_permutation"] < 0.01


def test_all_zero_differences_and_primary_t(tmp_path):
    it = {str(i): float(i % 2) for i in range(6)}
    files = {"m1": {"t": write_metrics(tmp_path, "m1", "t", {"s": metric_from_items(it)}, {"s": it})},
             "m2": {"t": write_metrics(tmp_path, "m2", "t", {"s": metric_from_items(it)}, {"s": it})}}
    (r,) = S.compute_comparisons([{"a": "m1", "b": "m2"}], files, {"primary_test": "t"})
    assert r["p_wilcoxon"] == 1.0 and r["p_t"] == 1.0 and r["p_permutation"] == 1.0
    assert "all differences zero" in r["note"] and r["test"].startswith("paired t-test")
    assert r["diff"] == 0.0


def test_status_missing_file_and_null_items(tmp_path):
    a = {"0": 1.0, "1": None, "2": 0.0, "3": 1.0}
    b = {"0": 0.0, "1": 1.0, "2": 0.0, "3": 0.0}
    files = {"m1": {"t": write_metrics(tmp_path, "m1", "t", {"s": {"value": 0.66, "n": 3}},
                                       {"s": a})},
             "m2": {"t": write_metrics(tmp_path, "m2", "t", {"s": {"value": 0.25, "n": 4}},
                                       {"s": b})},
             "m3": {"t": write_metrics(tmp_path, "m3", "t", {}, status="missing",
                                       reason="judge failed")}}
    rows = S.compute_comparisons([{"a": "m1", "b": "m2"}, {"a": "m1", "b": "m3"}], files, {})
    assert rows[0]["n"] == 3 and rows[0]["n_missing"] == 1 and "1 item score(s) null" in rows[0]["note"]
    assert rows[1]["status"] == "missing" and "judge failed" in rows[1]["note"]


def test_bad_metrics_file_raises_naming_file(tmp_path):
    p = write_metrics(tmp_path, "m1", "t", {"s": {"value": "high"}})
    q = write_metrics(tmp_path, "m2", "t", {"s": {"value": 0.1}})
    with pytest.raises(DataError, match=r"m1/t.json: metrics\['s'\].value"):
        S.compute_comparisons([{"a": "m1", "b": "m2"}], {"m1": {"t": p}, "m2": {"t": q}}, {})


def test_demo_banner_and_reproducible(grid):
    tmp, files, *_ = grid
    comps = [{"a": "doc", "b": "instruct", "benchmarks": ["ahb"]}]
    o1, o2 = tmp / "a" / "c1.tsv", tmp / "b" / "c2.tsv"
    S.run_comparisons(comps, files, {"demo": True, "n_bootstrap": 100}, str(o1))
    S.run_comparisons(comps, files, {"demo": True, "n_bootstrap": 100}, str(o2))
    text = o1.read_text()
    assert text.startswith("# DEMO") and text == o2.read_text()
    df = read_tsv(o1)
    assert df.note.str.startswith("DEMO").all()


def test_schema_style_nulls_and_ci_level(grid):
    tmp, files, *_ = grid
    comps = [{"a": "doc", "b": "instruct", "benchmarks": None, "metrics": None, "family": None,
              "at_posttrain_sizes": False}]
    rows = S.compute_comparisons(comps, files, {"alpha": 0.1, "n_bootstrap": 2000})
    assert {r["family"] for r in rows} == {"all"}
    assert S.resolve_stats_cfg({"alpha": 0.1})["ci_level"] == pytest.approx(0.9)
    # z-test: the output CI has level 1 - alpha; stderr is read at the stored 95% level
    r = next(r for r in rows if r["benchmark"] == "hellaswag")
    se = math.hypot(0.02, 0.025)
    assert r["ci_high"] - r["diff"] == pytest.approx(sps.norm.ppf(0.95) * se)
    paired = next(r for r in rows if r["benchmark"] == "ahb")
    wide = S.compute_comparisons(comps, files, {"alpha": 0.01, "n_bootstrap": 2000})[0]
    assert wide["ci_high"] - wide["ci_low"] > paired["ci_high"] - paired["ci_low"]


def test_z_test_from_ci_only(tmp_path):
    files = {"m1": {"h": write_metrics(tmp_path, "m1", "h", {"acc": {"value": 0.30, "ci_low": 0.25,
                                                                     "ci_high": 0.35, "n": 50}})},
             "m2": {"h": write_metrics(tmp_path, "m2", "h", {"acc": {"value": 0.20, "ci_low": 0.15,
                                                                     "ci_high": 0.25, "n": 40}})},
             "m3": {"h": write_metrics(tmp_path, "m3", "h", {"acc": {"value": 0.20, "n": 40}})}}
    r1, r2 = S.compute_comparisons([{"a": "m1", "b": "m2"}, {"a": "m1", "b": "m3"}], files, {})
    se = 0.05 / sps.norm.ppf(0.975)
    assert r1["p_value"] == pytest.approx(2 * sps.norm.sf(0.1 / (math.sqrt(2) * se)))
    assert r1["n"] == 40 and r1["status"] == "ok"
    assert r2["status"] == "no_test" and r2["p_value"] is None and "no CI or stderr for m3" in r2["note"]
    assert r2["diff"] == pytest.approx(0.1)
