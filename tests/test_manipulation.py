"""The manipulation check (doctune.analysis.manipulation): which pairs it compares, the four paired
comparisons per pair, the verdict in words (also when nothing moved), the token-budget flag, the
word-overlap check, the summary's first rows and the figure."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from doctune.analysis.manipulation import manipulation_pairs, probe_overlap, read_manipulation, run_manipulation_check

CFG = {
    "arms": {"doc": {"method": "doc", "corpus": "aw", "base_model": "base"},
             "control": {"method": "doc", "corpus": "ud", "base_model": "base"},
             "instruct": {"method": "sft", "data": "instruct", "base_model": "base"},
             "other": {"method": "doc", "corpus": "aw", "base_model": "b2"}},
    "benchmarks": {"aw_probe": {"kind": "probe", "corpus": "aw"}, "ud_probe": {"kind": "probe", "corpus": "ud"},
                   "ahb": {"kind": "ahb"}},
}


def test_pairs_are_document_arms_on_the_same_base_with_probes():
    pairs = manipulation_pairs(CFG)
    assert pairs == [{"arm": "doc", "control": "control", "base": "base", "arm_corpus": "aw", "control_corpus": "ud",
                      "arm_probe": "aw_probe", "control_probe": "ud_probe"}]
    no_probe = {**CFG, "benchmarks": {"aw_probe": CFG["benchmarks"]["aw_probe"]}}
    assert manipulation_pairs(no_probe) == []


@pytest.mark.parametrize("pair,message", [
    ({"arm": "instruct", "control": "control"}, "pairs[0].arm': 'instruct' is not a document arm"),
    ({"arm": "doc", "control": "other"}, "different base models"),
])
def test_explicit_pairs_are_checked(pair, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        manipulation_pairs({**CFG, "manipulation_check": {"pairs": [pair]}})


def _metrics(root: Path, model: str, bench: str, margins: dict[str, float]) -> str:
    v = sum(margins.values()) / len(margins)
    doc = {"model": model, "benchmark": bench, "kind": "probe", "status": "ok", "primary_metric": "margin",
           "metrics": {"margin": {"value": v, "ci_low": v - 0.01, "ci_high": v + 0.01, "n": len(margins),
                                  "n_missing": 0}},
           "items": {"margin": margins}}
    p = root / "metrics" / model / f"{bench}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc))
    return str(p)


def _state(root: Path, arm: str, tokens: int) -> str:
    p = root / "models" / arm / "trainer_state.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"finished": True, "result": {"tokens": tokens}}))
    return str(p)


def _setup(root: Path, doc_shift: float, control_shift: float, tokens=(1000, 1000), n=30):
    rng = random.Random(0)
    base = {b: {str(i): rng.gauss(0, 0.15) for i in range(n)} for b in ("aw_probe", "ud_probe")}
    noise = lambda: rng.gauss(0, 0.02)  # noqa: E731
    models = {"base": base,
              "doc": {"aw_probe": {k: v + doc_shift + noise() for k, v in base["aw_probe"].items()},
                      "ud_probe": {k: v + noise() for k, v in base["ud_probe"].items()}},
              "control": {"aw_probe": {k: v + noise() for k, v in base["aw_probe"].items()},
                          "ud_probe": {k: v + control_shift + noise() for k, v in base["ud_probe"].items()}}}
    files = {m: {b: _metrics(root, m, b, per[b]) for b in per} for m, per in models.items()}
    states = {"doc": [_state(root, "doc", tokens[0])], "control": [_state(root, "control", tokens[1])]}
    return files, states


STATS = {"n_bootstrap": 500, "n_permutations": 2000, "seed": 0, "comparisons": []}


def test_a_double_dissociation_is_found_and_said(tmp_path):
    files, states = _setup(tmp_path, doc_shift=0.05, control_shift=0.05)
    out = tmp_path / "manipulation.tsv"
    rows = run_manipulation_check(manipulation_pairs(CFG), files, states, STATS, {}, str(out))
    assert read_manipulation(str(out))[0]["verdict"] == rows[0]["verdict"]
    verdict, own, other, arm_base, ctl_base = rows
    assert verdict["row_type"] == "verdict" and own["comparison"] == "own" and other["comparison"] == "other"
    assert own["diff"] == pytest.approx(0.05, abs=0.02) and own["significant"]
    assert other["diff"] == pytest.approx(-0.05, abs=0.02) and other["significant"]
    assert arm_base["model_b"] == "base" and arm_base["significant"] and ctl_base["significant"]
    assert "doc moved toward its own corpus (aw)" in verdict["verdict"]
    assert "double dissociation" in verdict["verdict"] and own["n"] == 30
    assert verdict["token_ratio"] == 1.0 and verdict["note"] is None


def test_no_effect_says_the_intervention_did_not_take(tmp_path):
    files, states = _setup(tmp_path, doc_shift=0.0, control_shift=0.0, tokens=(1000, 1500))
    rows = run_manipulation_check(manipulation_pairs(CFG), files, states, STATS, {"token_tolerance": 0.1},
                                  str(tmp_path / "m.tsv"))
    v = rows[0]
    assert "did NOT move toward its own corpus" in v["verdict"] and "did not take" in v["verdict"]
    assert "WARNING" in v["verdict"] and "token budgets differ" in v["note"]


def test_a_missing_metrics_file_is_reported_not_guessed(tmp_path):
    files, states = _setup(tmp_path, 0.05, 0.05)
    Path(files["doc"]["aw_probe"]).unlink()
    rows = run_manipulation_check(manipulation_pairs(CFG), files, states, STATS, {}, str(tmp_path / "m.tsv"))
    assert rows[0]["diff"] is None and "could not be computed" in rows[0]["verdict"]
    assert rows[1]["status"] == "missing" and rows[1]["p_value"] is None


def test_summary_starts_with_the_check_and_the_figure_draws_it(tmp_path):
    from doctune.analysis.plots import manipulation_figure
    from doctune.analysis.summary import write_summary

    files, states = _setup(tmp_path, 0.05, 0.0)
    out = tmp_path / "m.tsv"
    run_manipulation_check(manipulation_pairs(CFG), files, states, STATS, {}, str(out))
    rows = write_summary(files, str(tmp_path / "summary.tsv"), manipulation=str(out))
    assert rows[0]["metric"] == "manipulation_check" and rows[0]["model"] == "doc vs control"
    assert [r["metric"] for r in rows[1:5]] == ["manipulation:own", "manipulation:other",
                                                "manipulation:arm_vs_base", "manipulation:control_vs_base"]
    assert rows[1]["p_value"] is not None and "moved toward" in rows[0]["note"]
    fig = manipulation_figure(read_manipulation(str(out)), str(tmp_path / "m.png"))
    d = fig["doc|control"]
    assert len(d["diff"]) == 4 and d["significant"][0] and not d["significant"][1]
    assert (tmp_path / "m.png").stat().st_size > 5000


def test_probe_overlap_counts_items_sharing_eight_words(tmp_path):
    items = tmp_path / "p.jsonl"
    items.write_text(json.dumps({"id": "1", "prompt": "q", "preferred": "one two three four five six seven eight nine",
                                 "dispreferred": "x"}) + "\n" +
                     json.dumps({"id": "2", "prompt": "q", "preferred": "nothing in common here", "dispreferred": "y"}) + "\n")
    docs = tmp_path / "d.jsonl"
    docs.write_text(json.dumps({"text": "Zero one two three four five six seven eight."}) + "\n")
    assert probe_overlap(str(items), str(docs)) == (1, 2)
