"""summary.tsv: long format, missing values empty (never 0), demo said plainly, readable by pandas."""
import json

import pandas as pd
import pytest

from doctune.io import DataError
from doctune.analysis.summary import COLUMNS, write_summary


def metrics_file(tmp_path, model, bench, metrics, primary, status="ok", reason=None):
    p = tmp_path / "results" / "metrics" / model / f"{bench}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps({"model": model, "benchmark": bench, "status": status, "reason": reason,
                             "primary_metric": primary, "metrics": metrics, "items": {}}))
    return str(p)


@pytest.fixture
def files(tmp_path):
    ok = {"value": 0.41, "ci_low": 0.33, "ci_high": 0.49, "n": 26, "n_missing": 2}
    return {
        "doc": {"ahb": metrics_file(tmp_path, "doc", "ahb",
                                    {"overall_mean": ok,
                                     "dimension:Moral Consideration": {"value": None, "ci_low": None,
                                                                       "ci_high": None, "n": 0,
                                                                       "n_missing": 4}},
                                    "overall_mean"),
                "hellaswag": metrics_file(tmp_path, "doc", "hellaswag", {}, "acc", status="missing",
                                          reason="lm-eval crashed")},
        "base": {"ahb": str(tmp_path / "results/metrics/base/ahb.json")},
    }


def test_summary_rows_and_missing(files, tmp_path):
    out = tmp_path / "results" / "summary.tsv"
    write_summary(files, str(out), expected=[("doc", "ahb"), ("instruct", "ahb")])
    text = out.read_text()
    assert not text.startswith("#")
    df = pd.read_csv(out, sep="\t", comment="#")
    assert list(df.columns) == COLUMNS
    r = df[(df.model == "doc") & (df.metric == "overall_mean")].iloc[0]
    assert (r.value, r.ci_low, r.ci_high, r.n, r.n_missing) == (0.41, 0.33, 0.49, 26, 2)
    assert r.status == "ok" and bool(r.primary)
    r = df[df.metric == "dimension:Moral Consideration"].iloc[0]
    assert r.status == "missing" and pd.isna(r.value) and r.n == 0
    # the raw line has an empty value field, not 0
    line = next(x for x in text.splitlines() if "Moral Consideration" in x).split("\t")
    assert line[3] == "" and line[4] == ""
    r = df[(df.model == "doc") & (df.benchmark == "hellaswag")].iloc[0]
    assert r.status == "missing" and "lm-eval crashed" in r.note and pd.isna(r.value)
    r = df[df.model == "base"].iloc[0]
    assert r.status == "missing" and "does not exist" in r.note
    r = df[df.model == "instruct"].iloc[0]
    assert r.status == "missing" and "no metrics file was produced" in r.note
    assert len(df) == 5
    side = json.loads((tmp_path / "results/provenance/summary.tsv.json").read_text())
    assert side["rule"] == "summary" and files["doc"]["ahb"] in side["inputs"]
    assert files["base"]["ahb"] not in side["inputs"]


def test_summary_demo_is_labelled(files, tmp_path):
    out = tmp_path / "results" / "summary.tsv"
    write_summary(files, str(out), demo=True)
    first = out.read_text().splitlines()[0]
    assert first.startswith("# DEMO") and "no evidence" in first
    df = pd.read_csv(out, sep="\t", comment="#")
    assert len(df) == 4 and df.note.str.startswith("DEMO").all()
    assert json.loads((tmp_path / "results/provenance/summary.tsv.json").read_text())[
        "config_slice"]["demo"] is True


def test_summary_bad_value_names_file(tmp_path):
    p = metrics_file(tmp_path, "m", "b", {"x": {"value": "0.3"}}, "x")
    with pytest.raises(DataError, match=r"m/b.json: metrics\['x'\].value"):
        write_summary({"m": {"b": p}}, str(tmp_path / "s.tsv"))


def test_summary_counts_dropped_questions_and_names_their_tags(tmp_path):
    """The AHB loader's `dataset` block (n_dropped, dropped[].tags) reaches every row of that
    model x benchmark; files without it leave n_dropped empty."""
    p = metrics_file(tmp_path, "base", "ahb", {"overall_mean": {"value": 0.5, "ci_low": 0.2, "ci_high": 0.8,
                                                               "n": 3, "n_missing": 0}}, "overall_mean")
    doc = json.loads(open(p).read())
    doc["dataset"] = {"n_questions": 3, "n_dropped": 2, "dropped": [
        {"id": "7", "why": "tag(s) naming no dimension", "tags": ["Moral Considerations", "Sentience"],
         "bad_tags": ["Moral Considerations"], "where": "q.jsonl:7"},
        {"id": "9", "why": "tag(s) naming no dimension", "tags": [""], "where": "q.jsonl:9"}]}
    open(p, "w").write(json.dumps(doc))
    other = metrics_file(tmp_path, "base", "hellaswag", {"acc": {"value": 0.3, "ci_low": 0.2, "ci_high": 0.4,
                                                                "n": 8, "n_missing": 0}}, "acc")
    out = tmp_path / "results" / "summary.tsv"
    write_summary({"base": {"ahb": p, "hellaswag": other}}, str(out))
    df = pd.read_csv(out, sep="\t", comment="#")
    r = df[df.benchmark == "ahb"].iloc[0]
    assert r.n_dropped == 2 and r.n == 3
    assert "2 question(s) dropped" in r.note and "'Moral Considerations'" in r.note and "''" in r.note
    assert "'Sentience'" not in r.note          # a good tag of a dropped question is not named
    assert pd.isna(df[df.benchmark == "hellaswag"].iloc[0].n_dropped)
