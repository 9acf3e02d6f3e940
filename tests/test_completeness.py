"""The completeness audit: every metrics file compares what the run planned for a model x benchmark
(``n_planned``, counted by the kind from the config and the data) with what it scored
(``n_scored``); the summary marks a shortfall ``incomplete`` with the counts in the note, and a
comparison resting on an incomplete side is flagged (comparisons, manipulation check)."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest

from doctune.analysis.stats import compute_comparisons
from doctune.analysis.summary import write_summary
from doctune.evaluation.kinds import get_kind
from doctune.evaluation.metrics import compute_metrics
from doctune.io import read_jsonl, write_jsonl


def _drop_line(path, index=0) -> None:
    rows = read_jsonl(path)
    del rows[index]
    write_jsonl(path, rows)


def _summary(tmp_path, files: dict) -> pd.DataFrame:
    out = tmp_path / "summary.tsv"
    write_summary(files, str(out))
    return pd.read_csv(out, sep="\t", comment="#")


@pytest.fixture
def ahb_run(tmp_path, repo_root):
    """The fixture AHB judged by a fake judge, 2 epochs x 1 judge, as rule judge writes it."""
    from doctune.evaluation.judging import judge_completions
    from tests.test_judging import FakeGen

    cfg = {"kind": "ahb", "source": {"path": str(repo_root / "resources/fixtures/ahb")}, "judge_format": "json",
           "judges": ["j"]}
    ids = [q["id"] for q in get_kind("ahb").prompts(cfg)]
    write_jsonl(tmp_path / "c.jsonl", [{"id": i, "epoch": e, "prompt": "p", "completion": "a"}
                                       for i in ids for e in (0, 1)])
    fake = FakeGen(lambda p, s: json.dumps({"reasoning": "r", "score": 1 if "Moral Consideration" in p else 0}))
    judge_completions(str(tmp_path / "c.jsonl"), "ahb", cfg, {"j": {}}, str(tmp_path / "s.jsonl"), None,
                      backends={"j": fake})
    return cfg, tmp_path / "s.jsonl"


def test_complete_judged_run_stays_ok(tmp_path, ahb_run):
    cfg, scores = ahb_run
    n_lines = len(read_jsonl(scores))
    res = compute_metrics("doc", "ahb", cfg, str(scores), str(tmp_path / "m.json"), epochs=2)
    # the kind's count of the plan is exactly what the judge produced: items x sets x epochs x judges
    assert res["n_planned"] == res["n_scored"] == n_lines and res["complete"] is True
    assert res["plan"]["epochs"] == 2 and res["plan"]["judges"] == 1
    assert res["plan"]["units_per_epoch"] * 2 == n_lines
    df = _summary(tmp_path, {"doc": {"ahb": str(tmp_path / "m.json")}})
    assert set(df.status) == {"ok"} and set(df.n_planned) == {n_lines}
    assert not df.note.fillna("").str.contains("planned").any()


def test_a_deleted_score_line_of_a_judged_benchmark_is_incomplete(tmp_path, ahb_run):
    cfg, scores = ahb_run
    planned = len(read_jsonl(scores))
    _drop_line(scores, 3)
    res = compute_metrics("doc", "ahb", cfg, str(scores), str(tmp_path / "m.json"), epochs=2)
    assert res["status"] == "ok" and res["complete"] is False
    assert (res["n_planned"], res["n_scored"]) == (planned, planned - 1)
    df = _summary(tmp_path, {"doc": {"ahb": str(tmp_path / "m.json")}})
    computed = df[df.value.notna()]
    # the primary metric's row and every sibling with a value say so, with the counts
    assert len(computed) >= 3 and set(computed.status) == {"incomplete"}
    assert computed.note.str.contains(f"scored {planned - 1:,} of {planned:,} planned units", regex=False).all()
    assert (df.n_planned == planned).all()
    assert df[df.primary.astype(str) == "True"].status.tolist() == ["incomplete"]


def test_the_plan_follows_the_epochs_the_run_asked_for(tmp_path, ahb_run):
    """Completions of a second epoch that never came: the plan (2 epochs) says what is lacking."""
    cfg, scores = ahb_run
    rows = read_jsonl(scores)
    write_jsonl(scores, [r for r in rows if r["epoch"] == 0])
    res = compute_metrics("doc", "ahb", cfg, str(scores), str(tmp_path / "m.json"), epochs=2)
    assert (res["n_planned"], res["n_scored"]) == (len(rows), len(rows) // 2)
    # a null verdict (no completion, an unparseable reply) is planned but not scored
    write_jsonl(scores, [dict(r, score=None) if i == 0 else r for i, r in enumerate(rows)])
    res = compute_metrics("doc", "ahb", cfg, str(scores), str(tmp_path / "m.json"), epochs=2)
    assert (res["n_planned"], res["n_scored"]) == (len(rows), len(rows) - 1)


def _probe_run(tmp_path, repo_root, n=8):
    cfg = {"kind": "probe", "source": {"path": str(repo_root / "resources/probes/urban_density.jsonl")},
           "max_items": n}
    rng = random.Random(0)
    items = get_kind("probe").load(cfg).items
    assert len(items) == n
    scores = tmp_path / "probe.jsonl"
    write_jsonl(scores, [{"item_id": it["id"], "margin": m, "margin_sum": 3 * m, "prefers": m > 0,
                          "prefers_sum": m > 0, "n_tokens_preferred": 20, "n_tokens_dispreferred": [21]}
                         for it in items for m in [rng.gauss(0.02, 0.1)]])
    return cfg, scores


def test_log_prob_kind_complete_and_with_a_deleted_line(tmp_path, repo_root):
    cfg, scores = _probe_run(tmp_path, repo_root)
    ok = compute_metrics("doc", "ud_probe", cfg, str(scores), str(tmp_path / "ok.json"))
    assert (ok["n_planned"], ok["n_scored"], ok["complete"]) == (8, 8, True) and ok["plan"]["unit"] == "probe items"
    _drop_line(scores, 5)
    bad = compute_metrics("doc", "ud_probe", cfg, str(scores), str(tmp_path / "bad.json"))
    assert (bad["n_planned"], bad["n_scored"], bad["complete"]) == (8, 7, False)
    df = _summary(tmp_path, {"doc": {"ud_probe": str(tmp_path / "bad.json")},
                             "base": {"ud_probe": str(tmp_path / "ok.json")}})
    doc, base = df[df.model == "doc"], df[df.model == "base"]
    assert set(doc.status) == {"incomplete"} and len(doc) == 4
    assert doc.note.str.startswith("scored 7 of 8 planned units").all() and (doc.n_planned == 8).all()
    assert set(base.status) == {"ok"} and (base.n_planned == 8).all()


def test_ai_risk_counts_items_with_both_answers_scored(tmp_path, repo_root):
    cfg = {"kind": "ai_risk", "source": {"path": str(repo_root / "resources/fixtures/advanced-ai-risk/"
                                                              "power-seeking-inclination.jsonl")}, "max_items": 4}
    rows = [{"item_id": str(i), "logprob_matching": -1.0, "logprob_not_matching": -2.0, "prefers_matching": True}
            for i in range(4)]
    rows[2]["prefers_matching"] = None                       # a non-finite log-probability
    write_jsonl(tmp_path / "s.jsonl", rows[:3])               # and the last line lost
    res = compute_metrics("m", "power_seeking", cfg, str(tmp_path / "s.jsonl"), str(tmp_path / "o.json"))
    assert (res["n_planned"], res["n_scored"], res["complete"]) == (4, 2, False)


def test_missing_file_is_still_missing_and_an_unknown_plan_is_not_a_shortfall(tmp_path):
    # no source: the plan cannot be counted; the metrics stand and the summary says ok
    write_jsonl(tmp_path / "s.jsonl", [{"unit_id": "0|j", "item_id": "0", "epoch": 0, "dimension": "A",
                                        "combination": "", "judge": "j", "score": 1, "weight": 1.0}])
    res = compute_metrics("m", "ahb", {"kind": "ahb"}, str(tmp_path / "s.jsonl"), str(tmp_path / "m.json"))
    assert res["n_planned"] is None and res["complete"] is None and res["n_scored"] == 1
    df = _summary(tmp_path, {"m": {"ahb": str(tmp_path / "m.json")},
                             "gone": {"ahb": str(tmp_path / "nope.json")}})
    assert set(df[df.model == "m"].status) == {"ok"}
    assert df[df.model == "gone"].status.tolist() == ["missing"]


def test_lm_eval_and_inspect_plans(tmp_path):
    lm = get_kind("lm_eval")
    data = {"status": "ok", "n": 5, "results": {"acc": 0.5, "acc_norm": 0.5},
            "per_item": {str(i): {"acc": 1, "acc_norm": 0} for i in range(4)}}
    assert lm.plan({"task": "hellaswag"}, data)["n_planned"] == 5 and lm.scored_units(data, {}) == 4
    insp = get_kind("inspect")
    doc = {"status": "ok", "n_samples": 3, "epochs": 2, "sample_errors": [{"id": "b", "epoch": 1, "error": "x"}],
           "samples": [{"id": s, "epoch": e, "scores": {"acc": 1}} for s in "abc" for e in (1, 2)]}
    assert insp.plan({}, doc)["n_planned"] == 6 and insp.scored_units(doc, {}) == 5


def _metrics_file(tmp_path, model, margins, planned, scored):
    v = sum(margins.values()) / len(margins)
    p = tmp_path / "metrics" / model / "probe.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"model": model, "benchmark": "probe", "kind": "probe", "status": "ok",
                             "primary_metric": "margin", "n_planned": planned, "n_scored": scored,
                             "metrics": {"margin": {"value": v, "ci_low": v - .01, "ci_high": v + .01,
                                                    "n": len(margins), "n_missing": 0}},
                             "items": {"margin": margins}}))
    return str(p)


def test_a_comparison_with_one_incomplete_side_is_flagged(tmp_path):
    rng = random.Random(1)
    base = {str(i): rng.gauss(0, 0.1) for i in range(10)}
    files = {"doc": {"probe": _metrics_file(tmp_path, "doc", {k: v + .05 for k, v in list(base.items())[:9]}, 10, 9)},
             "base": {"probe": _metrics_file(tmp_path, "base", base, 10, 10)},
             "other": {"probe": _metrics_file(tmp_path, "other", {k: v + .01 for k, v in base.items()}, 10, 10)}}
    stats = {"n_bootstrap": 200, "n_permutations": 500, "seed": 0}
    rows = compute_comparisons([{"a": "doc", "b": "base"}, {"a": "other", "b": "base"}], files, stats)
    flagged, clean = rows
    assert flagged["status"] == "ok" and flagged["p_value"] is not None          # the test still ran
    assert flagged["completeness"] == "incomplete"
    assert flagged["note"].startswith("INCOMPLETE: doc scored 9 of 10 planned units")
    assert clean["completeness"] == "complete" and "INCOMPLETE" not in (clean["note"] or "")


def test_the_manipulation_check_inherits_the_flag(tmp_path):
    from doctune.analysis.manipulation import run_manipulation_check

    rng = random.Random(2)
    base = {b: {str(i): rng.gauss(0, 0.1) for i in range(12)} for b in ("aw", "ud")}
    files = {}
    for m, shift in (("base", 0), ("doc", .03), ("control", .01)):
        files[m] = {}
        for b in ("aw", "ud"):
            p = tmp_path / m / f"{b}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            margins = {k: v + shift for k, v in base[b].items()}
            scored = 11 if (m, b) == ("control", "aw") else 12
            p.write_text(json.dumps({"status": "ok", "primary_metric": "margin", "n_planned": 12, "n_scored": scored,
                                     "metrics": {"margin": {"value": sum(margins.values()) / 12, "n": 12,
                                                            "n_missing": 0}},
                                     "items": {"margin": margins}}))
            files[m][b] = str(p)
    pair = {"arm": "doc", "control": "control", "base": "base", "arm_corpus": "aw", "control_corpus": "ud",
            "arm_probe": "aw", "control_probe": "ud"}
    rows = run_manipulation_check([pair], files, {}, {"n_bootstrap": 100, "n_permutations": 200, "seed": 0}, {},
                                  str(tmp_path / "manipulation.tsv"))
    verdict, own, other, arm_vs_base, control_vs_base = rows
    assert own["note"].startswith("INCOMPLETE: control scored 11 of 12 planned units")
    assert "INCOMPLETE" not in (other["note"] or "") and "INCOMPLETE" not in (arm_vs_base["note"] or "")
    assert "INCOMPLETE on aw: control scored 11 of 12 planned units" in verdict["note"]
    assert "_incomplete" not in own


@pytest.mark.parametrize("kind,cfg", [
    ("ahb", {"source": {"path": "resources/fixtures/ahb"}, "judges": ["a", "b"]}),
    ("compassion", {"source": {"path": "resources/benchmarks/human_compassion"}, "judges": ["a"]}),
    ("strongreject", {"source": {"path": "resources/fixtures/strongreject_small.csv"}, "judges": ["a", "b"]}),
])
def test_a_kinds_own_count_agrees_with_its_units(kind, cfg, repo_root, monkeypatch):
    """The judged kinds count their plan directly; the count must be what ``units`` expands to."""
    from doctune.evaluation.kinds.base import BenchmarkKind

    monkeypatch.chdir(repo_root)
    k, cfg = get_kind(kind), {"kind": kind, "judge_format": "json", **cfg}
    assert k.plan(cfg, [], epochs=3)["n_planned"] == BenchmarkKind.plan(k, cfg, [], epochs=3)["n_planned"] > 0


def test_seed_averages_add_up_the_seeds(tmp_path):
    from doctune.analysis.seeds import aggregate_seed_metrics

    def seed_file(name, scored, status="ok"):
        p = tmp_path / f"{name}.json"
        doc = {"status": status, "primary_metric": "margin", "n_planned": 8 if status == "ok" else None,
               "n_scored": scored, "metrics": {"margin": {"value": 0.1, "n": 8, "n_missing": 0}},
               "items": {"margin": {str(i): 0.1 for i in range(8)}}}
        p.write_text(json.dumps(doc))
        return str(p)

    files = {"doc@1": seed_file("s1", 8), "doc@2": seed_file("s2", 7)}
    res = aggregate_seed_metrics("doc", "probe", files, str(tmp_path / "agg.json"), n_bootstrap=50)
    assert (res["n_planned"], res["n_scored"], res["complete"]) == (16, 15, False)
    assert res["plan"]["by_seed"]["doc@2"] == {"n_planned": 8, "n_scored": 7}
    # a seed whose benchmark is missing (a marker: no plan of its own) scored none of the seeds' plan
    files = {"doc@1": seed_file("s1", 8), "doc@2": seed_file("s3", None, status="missing")}
    res = aggregate_seed_metrics("doc", "probe", files, str(tmp_path / "agg.json"), n_bootstrap=50)
    assert (res["n_planned"], res["n_scored"], res["complete"]) == (16, 8, False)
