"""The judge validity gate (doctune.evaluation.judge_gate): labelled answers through the
benchmark's own units and the judge's own prompts, kappa and accuracy with answer-level bootstrap
CIs, the pass rule, and the flags it puts on the summary, the comparisons and the figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctune.analysis.agreement import clustered_pair_stats, cohen_kappa
from doctune.evaluation.judge_gate import gate_benchmark, gate_units, read_set
from doctune.evaluation.kinds import get_kind
from doctune.io import DataError
from test_judging import FakeGen

REPO = Path(__file__).resolve().parents[1]
AHB = {"kind": "ahb", "source": {"path": str(REPO / "resources/fixtures/ahb")}, "max_questions": 2,
       "judge_format": "json", "judge_validation": [str(REPO / "resources/judge_validation/ahb_fixture.jsonl")]}


def _answers() -> dict[str, int]:
    return {r["answer"]: r["label"] for r in map(json.loads, open(AHB["judge_validation"][0]))}


def oracle(labels: dict[str, int], flip: bool = False):
    """A judge that knows the labels (finds the answer in its prompt), or says the opposite."""
    def reply(prompt, seed):
        lab = next(v for a, v in labels.items() if a in prompt)
        return json.dumps({"score": (1 - lab) if flip else lab, "reason": "x"})
    return reply


def test_read_set_errors_name_file_and_line(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text('{"id": 1, "question_id": 0, "answer": "a", "label": 1}\n{"id": 2, "question_id": 0, "answer": "b", "label": 2}\n')
    with pytest.raises(DataError, match=r"l\.jsonl:2: 'label' must be 0 or 1"):
        read_set({"path": str(p), "format": "labelled"})
    p.write_text('{"id": 1, "question_id": 0, "label": 1}\n')
    with pytest.raises(DataError, match=r"l\.jsonl:1: .*'answer'"):
        read_set({"path": str(p), "format": "labelled"})


def test_units_use_the_full_question_set_and_skip_what_does_not_fit():
    units, skipped = gate_units(get_kind("ahb"), AHB, read_set({"path": AHB["judge_validation"][0],
                                                                   "format": "labelled"}))
    # max_questions does not limit the gate; question 3 is dropped by the loader (a tag naming no
    # dimension), so its four answers are skipped and counted, not judged
    assert {u["item_id"] for u in units} == {"0", "1", "2", "4", "6"}
    assert skipped == {"question not in the benchmark": 4}
    assert all(u["label"] in (0, 1) and u["record"] for u in units)


def test_graded_responses_of_the_published_ahb(shared_benchmarks):
    """CaML's 108 graded Llama-3.1-8B responses against the published questions: one unit per graded
    dimension, labelled by the score threshold."""
    ahb = shared_benchmarks / "ahb"
    recs = read_set({"path": str(ahb / "llama_8b_graded.jsonl"), "format": "graded", "label_threshold": 0.5})
    assert len(recs) == 108
    units, skipped = gate_units(get_kind("ahb"), {"kind": "ahb", "source": {"path": str(ahb)}}, recs)
    n_scores = sum(len(r["labels"]) for r in recs)
    assert 0 < len(units) <= n_scores and not skipped.get("question text differs")
    lab = {(u["record"], u["dimension"]): u["label"] for u in units}
    for r in recs[:10]:
        for d, v in r["labels"].items():
            if (r["id"], d) in lab:
                assert lab[(r["id"], d)] == v


def test_clustered_kappa_equals_the_flat_statistic_and_resamples_answers():
    clusters = [[(1, 1), (1, 1)], [(0, 0)], [(1, 0), (1, 1)], [(0, 0), (0, 1)], [(0, 0)]]
    st = clustered_pair_stats(clusters, n_bootstrap=500, seed=1)
    flat = [p for c in clusters for p in c]
    assert st["kappa"]["value"] == pytest.approx(cohen_kappa([a for a, _ in flat], [b for _, b in flat]))
    assert st["raw_agreement"]["value"] == pytest.approx(6 / 8)
    assert st["kappa"]["n"] == 8 and st["kappa"]["n_clusters"] == 5
    assert st["kappa"]["ci_low"] <= st["kappa"]["value"] <= st["kappa"]["ci_high"]


@pytest.mark.parametrize("flip,status", [(False, "passed"), (True, "failed")])
def test_gate_passes_a_judge_that_knows_the_labels_and_fails_one_that_inverts_them(tmp_path, flip, status):
    fake = FakeGen(oracle(_answers(), flip))
    out = tmp_path / "gate.json"
    g = gate_benchmark("ahb", AHB, {"j": {"judge_mode": "generate"}}, {"min_kappa": 0.0, "n_bootstrap": 300},
                       str(out), backends={"j": fake})
    assert json.loads(out.read_text()) == g
    j = g["judges"]["j"]
    assert g["status"] == status == j["status"]
    assert j["kappa"]["value"] == pytest.approx(-1.0 if flip else 1.0)
    assert j["accuracy"]["value"] == pytest.approx(0.0 if flip else 1.0)
    assert j["n_answers"] == 20 and j["sets"]["ahb_fixture"]["skipped"] == {"question not in the benchmark": 4}
    # the judge saw the benchmark's own judge prompt (format json) for every unit
    assert len(fake.requests) == j["n_units"] and all(r.response_schema for r in fake.requests)


def test_a_benchmark_without_labelled_answers_is_unvalidated(tmp_path):
    g = gate_benchmark("ahb", {**AHB, "judge_validation": []}, {"j": {}}, {}, str(tmp_path / "g.json"))
    assert g["status"] == "unvalidated" and "judge_validation" in g["reason"]


def _metrics(path: Path, model: str, gate: dict | None, value: float) -> str:
    doc = {"model": model, "benchmark": "ahb", "kind": "ahb", "status": "ok", "primary_metric": "overall_mean",
           "metrics": {"overall_mean": {"value": value, "ci_low": value - 0.1, "ci_high": value + 0.1, "n": 3,
                                        "n_missing": 0}},
           "items": {"overall_mean": {"0": value, "1": value - 0.2, "2": value + 0.1}}}
    if gate is not None:
        doc["judge_gate"] = gate
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_failed_gate_is_flagged_in_summary_comparisons_and_figures(tmp_path):
    from doctune.analysis import plots
    from doctune.evaluation.metrics import gate_summary
    from doctune.analysis.stats import compute_comparisons
    from doctune.analysis.summary import write_summary

    fake = FakeGen(oracle(_answers(), flip=True))
    gate_file = tmp_path / "gate.json"
    gate_benchmark("ahb", AHB, {"j": {"judge_mode": "generate"}}, {"n_bootstrap": 200}, str(gate_file),
                   backends={"j": fake})
    gate = gate_summary(str(gate_file))
    assert gate["status"] == "failed" and gate["note"].startswith("JUDGE FAILED THE GATE")
    files = {m: {"ahb": _metrics(tmp_path / m / "ahb.json", m, gate, v)} for m, v in (("a", 0.6), ("b", 0.4))}
    rows = write_summary(files, str(tmp_path / "summary.tsv"), gates={"ahb": str(gate_file)})
    bench = [r for r in rows if r["model"] in ("a", "b")]
    assert bench and all(r["judge_gate"] == "failed" and r["note"].startswith("JUDGE FAILED") for r in bench)
    kappa = [r for r in rows if r["metric"] == "judge_gate:kappa"]
    assert kappa and kappa[0]["model"] == "judge:j" and kappa[0]["value"] == pytest.approx(-1.0)
    comp = compute_comparisons([{"a": "a", "b": "b"}], files, {"n_bootstrap": 100, "n_permutations": 100})
    assert comp and all(r["judge_gate"] == "failed" and r["note"].startswith("JUDGE FAILED") for r in comp)
    ov = plots.overview(files, ["a", "b"], {"ahb": "ahb"}, str(tmp_path / "ov.png"))
    assert ov["gate_flags"] == {"ahb": "judge gate failed"}
    # a passing gate flags nothing
    ok = {**gate, "status": "passed"}
    files_ok = {m: {"ahb": _metrics(tmp_path / "ok" / m / "ahb.json", m, ok, v)} for m, v in (("a", 0.6), ("b", 0.4))}
    assert plots.gate_flag(files_ok, "ahb") is None
    assert all(r["judge_gate"] == "passed" for r in compute_comparisons([{"a": "a", "b": "b"}], files_ok, {}))
