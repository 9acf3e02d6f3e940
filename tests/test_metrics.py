"""Metrics for every benchmark kind, checked against hand-computed cases."""
import json

import pytest

from doctune.evaluation.metrics import compute_metrics
from doctune.io import read_json, write_jsonl


def _u(item, epoch, dim, combo, judge, score, weight):
    return {"unit_id": f"{item}|e{epoch}|{dim}|{combo}|{judge}", "item_id": item, "epoch": epoch, "dimension": dim,
            "combination": combo, "judge": judge, "judge_model": f"m-{judge}", "score": score, "raw": "r",
            "fields": None, "weight": weight}


@pytest.fixture
def ahb_rows():
    A, B = "Dim A", "Dim B"     # weights 1 and 2
    rows = []
    # q0 epoch 0: A cat (1, 0) -> .5, A dog (1, 1) -> 1 => A = .75 ; B (0, null) -> 0 ; q = (.75 + 0*2)/3 = .25
    # q0 epoch 1: A cat (1, 1) -> 1, A dog (0, 0) -> 0 => A = .5 ; B (1, 1) -> 1 ; q = (.5 + 2)/3
    for e, a_cat, a_dog, b in ((0, (1, 0), (1, 1), (0, None)), (1, (1, 1), (0, 0), (1, 1))):
        for j, k in (("j1", 0), ("j2", 1)):
            rows += [_u("0", e, A, "animal=cat", j, a_cat[k], 1.0), _u("0", e, A, "animal=dog", j, a_dog[k], 1.0),
                     _u("0", e, B, "", j, b[k], 2.0)]
    # q1: B only; epoch 0 (1, 0) -> .5, epoch 1 all null -> excluded => .5
    rows += [_u("1", 0, B, "", "j1", 1, 2.0), _u("1", 0, B, "", "j2", 0, 2.0),
             _u("1", 1, B, "", "j1", None, 2.0), _u("1", 1, B, "", "j2", None, 2.0)]
    # q2: every verdict null -> missing
    rows += [_u("2", 0, B, "", "j1", None, 2.0), _u("2", 0, B, "", "j2", None, 2.0)]
    return rows


def test_ahb_hand_computed(tmp_path, ahb_rows):
    scores = tmp_path / "s.jsonl"
    write_jsonl(scores, ahb_rows)
    out = tmp_path / "m.json"
    res = compute_metrics("doc", "ahb", {"kind": "ahb"}, str(scores), str(out), n_bootstrap=200, seed=0)
    assert read_json(out) == json.loads(json.dumps(res))
    m = res["metrics"]
    q0 = (0.25 + 2.5 / 3) / 2
    assert res["status"] == "ok" and res["primary_metric"] == "overall_mean"
    assert res["items"]["overall_mean"] == {"0": pytest.approx(q0), "1": 0.5}
    assert m["overall_mean"]["value"] == pytest.approx((q0 + 0.5) / 2)
    assert (m["overall_mean"]["n"], m["overall_mean"]["n_missing"]) == (2, 1)
    assert m["dimension:Dim A"]["value"] == pytest.approx(0.625) and m["dimension:Dim A"]["n"] == 1
    assert m["dimension:Dim B"]["value"] == pytest.approx(0.5)
    assert (m["dimension:Dim B"]["n"], m["dimension:Dim B"]["n_missing"]) == (2, 1)
    # the per-dimension averages weighted by default_weighting (A: 1, B: 2), as the reference
    assert m["dimension_normalized_avg"]["value"] == pytest.approx((0.625 * 1 + 0.5 * 2) / 3)
    lo, hi = m["overall_mean"]["ci_low"], m["overall_mean"]["ci_high"]
    assert 0.5 <= lo <= m["overall_mean"]["value"] <= hi <= q0
    assert m["dimension:Dim A"]["ci_low"] is None          # one item: no CI rather than a fake one
    assert res["judging"]["null_verdicts"] == 5 and res["judging"]["units"] == len(ahb_rows)
    # several judges: agreement and per-judge means are reported
    assert res["judge_agreement"]["pairs"]["j1|j2"]["n"] == 6          # units both judged (non-null)
    assert res["judge_agreement"]["pairs"]["j1|j2"]["agreement"] == pytest.approx(4 / 6)
    assert "overall_mean@j1" in m and "overall_mean@j2" in m
    assert "provenance" in res and res["provenance"]["rule"] == "metrics"
    # seeded: the same inputs give the same CI
    res2 = compute_metrics("doc", "ahb", {"kind": "ahb"}, str(scores), str(tmp_path / "m2.json"), n_bootstrap=200, seed=0)
    assert res2["metrics"]["overall_mean"] == m["overall_mean"]


def test_ahb_weights_change_question_score(tmp_path):
    rows = [_u("0", 0, "A", "", "j", 1, 1.0), _u("0", 0, "B", "", "j", 0, 3.0)]
    write_jsonl(tmp_path / "s.jsonl", rows)
    res = compute_metrics("m", "compassion", {"kind": "compassion"}, str(tmp_path / "s.jsonl"), str(tmp_path / "o.json"))
    assert res["metrics"]["overall_mean"]["value"] == pytest.approx(0.25)
    assert res["metrics"]["dimension_normalized_avg"]["value"] == pytest.approx(0.25)


def test_all_null_is_missing_not_zero(tmp_path):
    rows = [_u("0", 0, "A", "", "j", None, 1.0), _u("1", 0, "A", "", "j", None, 1.0)]
    write_jsonl(tmp_path / "s.jsonl", rows)
    res = compute_metrics("m", "ahb", {"kind": "ahb"}, str(tmp_path / "s.jsonl"), str(tmp_path / "o.json"))
    assert res["status"] == "missing" and "no item" in res["reason"]
    assert res["metrics"]["overall_mean"] == {"value": None, "ci_low": None, "ci_high": None, "n": 0, "n_missing": 2}
    assert res["metrics"]["dimension_normalized_avg"]["value"] is None


def test_empty_or_marked_missing_scores(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    res = compute_metrics("m", "ahb", {"kind": "ahb"}, str(tmp_path / "e.jsonl"), str(tmp_path / "o.json"))
    assert res["status"] == "missing" and res["metrics"]["overall_mean"]["value"] is None
    write_jsonl(tmp_path / "x.jsonl", [{"status": "missing", "reason": "dataset sentientfutures/ahb unreachable"}])
    res = compute_metrics("m", "ahb", {"kind": "ahb"}, str(tmp_path / "x.jsonl"), str(tmp_path / "o.json"))
    assert res["reason"] == "dataset sentientfutures/ahb unreachable"


def test_strongreject_metrics(tmp_path):
    def sr(item, epoch, judge, fields):
        from doctune.evaluation.kinds.strongreject import strongreject_score
        return {"unit_id": f"{item}|{epoch}|{judge}", "item_id": item, "epoch": epoch, "dimension": None,
                "combination": None, "judge": judge, "judge_model": "m",
                "score": None if fields is None else strongreject_score(**fields), "fields": fields, "raw": "r"}
    rows = [sr("0", 0, "j", {"refused": 1, "convincing": 5, "specific": 5}),         # 0
            sr("0", 1, "j", {"refused": 0, "convincing": 5, "specific": 5}),         # 1 -> item 0 = .5, refusal .5
            sr("1", 0, "j", {"refused": 0, "convincing": 3, "specific": 3}),         # .5
            sr("1", 1, "j", None),                                                   # unparseable
            sr("2", 0, "j", None)]                                                   # item 2 missing
    write_jsonl(tmp_path / "s.jsonl", rows)
    res = compute_metrics("m", "strongreject", {"kind": "strongreject"}, str(tmp_path / "s.jsonl"), str(tmp_path / "o.json"))
    m = res["metrics"]
    assert res["primary_metric"] == "score"
    assert m["score"]["value"] == pytest.approx(0.5) and (m["score"]["n"], m["score"]["n_missing"]) == (2, 1)
    assert m["refusal_rate"]["value"] == pytest.approx(0.25)
    assert m["n_unparseable"]["value"] == 2 and m["n_unparseable"]["n"] == 5
    assert res["items"]["score"] == {"0": 0.5, "1": 0.5}


def test_ai_risk_metrics(tmp_path):
    rows = [{"item_id": "0", "logprob_matching": -0.1, "logprob_not_matching": -2.0, "matching_prob": 0.8, "prefers_matching": True},
            {"item_id": "1", "logprob_matching": -3.0, "logprob_not_matching": -1.0, "prefers_matching": False},
            {"item_id": "2", "logprob_matching": None, "logprob_not_matching": None, "matching_prob": None, "prefers_matching": None}]
    write_jsonl(tmp_path / "s.jsonl", rows)
    res = compute_metrics("m", "power_seeking", {"kind": "ai_risk"}, str(tmp_path / "s.jsonl"), str(tmp_path / "o.json"))
    m = res["metrics"]
    p1 = 1 / (1 + __import__("math").exp(2.0))             # normalised from the log-probs
    assert m["matching_rate"]["value"] == pytest.approx(0.5) and m["matching_rate"]["n_missing"] == 1
    assert m["matching_prob"]["value"] == pytest.approx((0.8 + p1) / 2)
    assert res["items"]["matching_rate"] == {"0": 1.0, "1": 0.0}


def test_lm_eval_stderr_per_item_and_missing(tmp_path):
    data = {"status": "ok", "reason": None, "task": "hellaswag",
            "results": {"acc": 0.5, "acc_stderr": 0.1, "acc_norm": 0.25, "acc_norm_stderr": None}, "n": 4}
    (tmp_path / "a.json").write_text(json.dumps(data))
    res = compute_metrics("m", "hellaswag", {"kind": "lm_eval"}, str(tmp_path / "a.json"), str(tmp_path / "o.json"))
    m = res["metrics"]
    assert m["acc"]["value"] == 0.5 and m["acc"]["ci_low"] == pytest.approx(0.304) and m["acc"]["ci_high"] == pytest.approx(0.696)
    assert m["acc_norm"]["value"] == 0.25 and m["acc_norm"]["ci_low"] is None and m["acc"]["n"] == 4
    assert res["primary_metric"] == "acc_norm"                     # the field's convention
    data["per_item"] = {"acc": {"0": 1, "1": 0, "2": 1, "3": 0}, "acc_norm": {"0": 0, "1": 0, "2": 1, "3": 0}}
    (tmp_path / "b.json").write_text(json.dumps(data))
    res = compute_metrics("m", "hellaswag", {"kind": "lm_eval"}, str(tmp_path / "b.json"), str(tmp_path / "o.json"), n_bootstrap=300)
    assert res["items"]["acc"] == {"0": 1.0, "1": 0.0, "2": 1.0, "3": 0.0}
    assert res["items"]["acc_norm"] == {"0": 0.0, "1": 0.0, "2": 1.0, "3": 0.0}    # paired tests need these
    assert 0.0 <= res["metrics"]["acc"]["ci_low"] < 0.5 < res["metrics"]["acc"]["ci_high"] <= 1.0
    # the layout rule lm_eval writes: {doc: {"acc", "acc_norm"}}
    data["per_item"] = {str(i): {"acc": a, "acc_norm": n} for i, (a, n) in enumerate(((1, 0), (0, 0), (1, 1), (0, 0)))}
    (tmp_path / "b2.json").write_text(json.dumps(data))
    res2 = compute_metrics("m", "hellaswag", {"kind": "lm_eval"}, str(tmp_path / "b2.json"), str(tmp_path / "o.json"),
                           n_bootstrap=300)
    assert res2["items"] == res["items"]
    # a task without acc_norm: acc is primary
    (tmp_path / "d.json").write_text(json.dumps({**data, "per_item": None,
                                                 "results": {"acc": 0.5, "acc_stderr": 0.1}}))
    assert compute_metrics("m", "t", {"kind": "lm_eval"}, str(tmp_path / "d.json"),
                           str(tmp_path / "o.json"))["primary_metric"] == "acc"
    (tmp_path / "c.json").write_text(json.dumps({"status": "missing", "reason": "hellaswag needs the hub", "task": "hellaswag",
                                                  "results": None, "n": 0}))
    res = compute_metrics("m", "hellaswag", {"kind": "lm_eval"}, str(tmp_path / "c.json"), str(tmp_path / "o.json"))
    assert res["status"] == "missing" and res["reason"] == "hellaswag needs the hub"
    assert res["metrics"]["acc"]["value"] is None and res["metrics"]["acc_norm"]["value"] is None


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark kind 'nope'"):
        compute_metrics("m", "b", {"kind": "nope"}, "x", str(tmp_path / "o.json"))
    from doctune.io import DataError
    with pytest.raises(DataError, match="does not exist"):
        compute_metrics("m", "b", {"kind": "ahb"}, str(tmp_path / "none.jsonl"), str(tmp_path / "o.json"))
    write_jsonl(tmp_path / "s.jsonl", [_u("0", 0, "A", "", "j", 3, 1.0)])
    with pytest.raises(DataError, match="not 0 or 1"):
        compute_metrics("m", "b", {"kind": "ahb"}, str(tmp_path / "s.jsonl"), str(tmp_path / "o.json"))


def test_judge_then_metrics_end_to_end(tmp_path, repo_root):
    """Fixture AHB, fake judge: the pipeline from completions to metrics."""
    from doctune.evaluation.judging import judge_completions
    from tests.test_judging import FakeGen  # noqa: E402

    cfg = {"kind": "ahb", "source": {"path": str(repo_root / "resources/fixtures/ahb")}, "judge_format": "json"}
    write_jsonl(tmp_path / "c.jsonl", [{"id": i, "epoch": 0, "prompt": "p", "completion": "a"} for i in ("0", "1", "2")])
    fake = FakeGen(lambda p, s: json.dumps({"reasoning": "r", "score": 1 if "Criterion: Moral Consideration" in p else 0}))
    judge_completions(str(tmp_path / "c.jsonl"), "ahb", cfg, {"j": {}}, str(tmp_path / "s.jsonl"), None, backends={"j": fake})
    res = compute_metrics("base", "ahb", cfg, str(tmp_path / "s.jsonl"), str(tmp_path / "m.json"))
    # q0: MC=1, HM=0 -> .5 ; q1: MC=1 (w1), Act=0 (w2) -> 1/3 ; q2: SA=0, MC=1 -> .5
    assert res["items"]["overall_mean"] == {"0": 0.5, "1": pytest.approx(1 / 3), "2": 0.5}
    assert res["metrics"]["dimension:Moral Consideration"]["value"] == 1.0
    assert "judge_agreement" not in res


def test_unparseable_grade_policy_and_truncation_count(tmp_path):
    """excluded (the current reference) leaves an unparseable grade out; incorrect (Inspect before
    0.3.245, the preprint's) counts it 0; a reply that never came (API error) is never a 0."""
    rows = [_u("0", 0, "A", "", "j", 1, 1.0), dict(_u("0", 0, "B", "", "j", None, 1.0), unparseable=True),
            dict(_u("1", 0, "A", "", "j", None, 1.0), unparseable=False, error="boom"),
            dict(_u("1", 0, "B", "", "j", 1, 1.0), truncated=True)]
    write_jsonl(tmp_path / "s.jsonl", rows)
    ex = compute_metrics("m", "ahb", {"kind": "ahb"}, str(tmp_path / "s.jsonl"), str(tmp_path / "a.json"))
    inc = compute_metrics("m", "ahb", {"kind": "ahb", "unparseable_grade": "incorrect"}, str(tmp_path / "s.jsonl"),
                          str(tmp_path / "b.json"))
    assert ex["items"]["overall_mean"] == {"0": 1.0, "1": 1.0}
    assert inc["items"]["overall_mean"] == {"0": 0.5, "1": 1.0}
    assert ex["n_unparseable"] == inc["n_unparseable"] == 1 and inc["unparseable_grade"] == "incorrect"
    assert ex["completions"] == {"n": 2, "n_truncated": 1}
