"""An unavailable data set (hub unreachable, gated, not cached offline) is reported as missing for what
needs it, and the rest of the run goes on: markers written by doctune.workflow.pipeline.run, passed along
by the rules that cannot use them, read by metrics and the summary."""
from __future__ import annotations

import json

import pytest

from doctune.io import DataUnavailable, missing_marker, write_missing_marker
from doctune.workflow.pipeline import data_unavailable, run
from harness.snakemake_stub import FakeSM


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # provenance sidecars go under ./results


def test_unavailable_data_writes_markers_and_the_job_succeeds(tmp_path):
    outs = [tmp_path / "results/completions/m/ahb.jsonl", tmp_path / "results/lm_eval/m/hs.json"]

    def body():
        raise DataUnavailable("dataset 'org/ahb' could not be loaded (offline)")

    assert run(FakeSM("completions", [], outs, tmp_path), body) is None
    assert missing_marker(outs[0]) == missing_marker(outs[1])
    assert "dataset 'org/ahb'" in missing_marker(outs[0])
    assert len(outs[0].read_text().splitlines()) == 1
    assert "writing missing markers" in (tmp_path / "logs/completions.log").read_text()


def test_rules_combining_many_benchmarks_never_become_markers(tmp_path):
    out = tmp_path / "results/agreement/rating_key.json"

    def body():
        raise DataUnavailable("one benchmark's data is unavailable")

    with pytest.raises(DataUnavailable):
        run(FakeSM("rating_sample", [], [out], tmp_path), body)
    assert not out.exists()


def test_other_errors_still_fail(tmp_path):
    out = tmp_path / "results/x.jsonl"

    def body():
        raise ValueError("a real bug")

    with pytest.raises(ValueError):
        run(FakeSM("completions", [], [out], tmp_path), body)
    assert not out.exists()


def test_only_hub_problems_from_inside_the_datasets_library_count_as_unavailable(tmp_path, monkeypatch):
    """A dataset the hub cannot give offline is unavailable; a local file that is not there or a
    wrong split is the user's to fix (doctune.workflow.hub.hub_problem sorts them; tests/test_failures.py)."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = tmp_path / "d.jsonl"
    data.write_text('{"a": 1}\n')
    cases = [(("no-such-org/no-such-dataset",), {"split": "train"}, True),
             (("json",), {"data_files": str(tmp_path / "not-there.jsonl"), "split": "train"}, False),
             (("json",), {"data_files": str(data), "split": "tset"}, False)]
    for args, kw, unavailable in cases:
        try:
            datasets.load_dataset(*args, **kw)
        except Exception as exc:  # noqa: BLE001
            assert data_unavailable(exc) is unavailable, exc
        else:  # pragma: no cover
            pytest.fail(f"load_dataset{args} {kw} did not fail")
    try:
        json.loads("{")
    except ValueError as exc:
        assert not data_unavailable(exc)


def test_markers_pass_through_rules_that_cannot_use_them(tmp_path):
    marker = tmp_path / "results/data/posttrain-4.jsonl"
    write_missing_marker(marker, "posttrain data unavailable")
    outs = [tmp_path / "results/models/doc.post4/model.json", tmp_path / "results/models/doc.post4/trainer_state.json"]
    called = []
    run(FakeSM("post_train", [marker], outs, tmp_path), lambda: called.append(1))
    assert not called and all(missing_marker(o) == "posttrain data unavailable" for o in outs)
    # the model's completions: the spec is a marker -> so are the completions
    comp = tmp_path / "results/completions/doc.post4/ahb.jsonl"
    run(FakeSM("completions", [outs[0]], [comp], tmp_path), lambda: called.append(1))
    assert not called and missing_marker(comp) == "posttrain data unavailable"
    # metrics reads the marker itself (its body runs)
    run(FakeSM("metrics", [comp], [tmp_path / "m.json"], tmp_path), lambda: called.append(1))
    assert called == [1]


def test_metrics_and_summary_report_the_benchmark_missing_with_the_reason(tmp_path):
    from doctune.evaluation.metrics import compute_metrics
    from doctune.analysis.summary import summary_rows

    scores = tmp_path / "results/scores/base/ahb.jsonl"
    write_missing_marker(scores, "data unavailable: dataset 'org/ahb' offline")
    lm = tmp_path / "results/lm_eval/base/hellaswag.json"
    write_missing_marker(lm, "data unavailable: posttrain")
    m1 = compute_metrics("base", "ahb", {"kind": "ahb"}, str(scores), str(tmp_path / "m/ahb.json"), n_bootstrap=10)
    m2 = compute_metrics("base", "hellaswag", {"kind": "lm_eval"}, str(lm), str(tmp_path / "m/hs.json"), n_bootstrap=10)
    assert m1["status"] == m2["status"] == "missing"
    assert all(v["value"] is None for v in m1["metrics"].values())
    rows = summary_rows({"base": {"ahb": str(tmp_path / "m/ahb.json"), "hellaswag": str(tmp_path / "m/hs.json")}})
    assert rows and all(r["status"] == "missing" and r.get("value") is None for r in rows)
    assert any("dataset 'org/ahb' offline" in r["note"] for r in rows if r["benchmark"] == "ahb")


def test_posttrain_dataset_that_cannot_be_loaded_is_unavailable(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from doctune.data.posttrain import write_posttrain

    def unreachable(*a, **k):
        raise ConnectionError("Couldn't reach 'tatsu-lab/alpaca' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(DataUnavailable, match="posttrain_data.source.dataset.*tatsu-lab/alpaca"):
        write_posttrain({"dataset": "tatsu-lab/alpaca", "format": "alpaca"}, 4, 0, str(tmp_path / "p.jsonl"))
    # a local file that does not exist stays a user error
    from doctune.io import DataError

    with pytest.raises(DataError):
        write_posttrain({"path": str(tmp_path / "none.json"), "format": "alpaca"}, 4, 0, str(tmp_path / "p.jsonl"))


def test_rating_sample_skips_benchmarks_whose_data_was_missing(tmp_path):
    from doctune.analysis.agreement import criteria_from_benchmarks, export_rating_sample

    # the tests run offline (conftest): a hub dataset cannot be loaded
    assert criteria_from_benchmarks({"ahb": {"kind": "ahb", "source": {"dataset": "no-such-org/no-such-ahb"}}}) == {}

    scores = tmp_path / "s.jsonl"
    comps = tmp_path / "c.jsonl"
    write_missing_marker(scores, "offline")
    write_missing_marker(comps, "offline")
    n = export_rating_sample({"m": {"ahb": str(scores)}}, {"m": {"ahb": str(comps)}}, 2, 0,
                             str(tmp_path / "a.csv"), str(tmp_path / "a.html"), str(tmp_path / "k.json"))
    assert n == 0


def test_one_job_for_several_benchmarks_keeps_missing_data_per_benchmark(tmp_path):
    """run_each (one model, all its benchmarks in one job): an unavailable data set or a marker
    input makes only that benchmark's outputs markers; the others run, each output's provenance
    names its own inputs only."""
    from doctune.workflow.pipeline import run_each
    from doctune.workflow.provenance import sidecar_path

    res = tmp_path / "results"
    upstream = res / "completions/m/sr.jsonl"
    write_missing_marker(upstream, "sr data: gated")
    ok_in = res / "completions/m/ahb.jsonl"
    ok_in.parent.mkdir(parents=True, exist_ok=True)
    ok_in.write_text('{"id": "1"}\n')
    outs = {b: res / f"scores/m/{b}.jsonl" for b in ("ahb", "hc", "sr")}
    ran = []

    def body(b):
        def f():
            ran.append(b)
            if b == "hc":
                raise DataUnavailable("hc dataset offline")
            outs[b].parent.mkdir(parents=True, exist_ok=True)
            outs[b].write_text('{"score": 1}\n')
            return b
        return f

    units = [{"name": "ahb", "outputs": [outs["ahb"]], "inputs": [ok_in], "config": {"k": 1}, "body": body("ahb")},
             {"name": "hc", "outputs": [outs["hc"]], "inputs": [], "config": {}, "body": body("hc")},
             {"name": "sr", "outputs": [outs["sr"]], "inputs": [upstream], "config": {}, "body": body("sr")}]
    got = run_each(FakeSM("judge", [], list(outs.values()), tmp_path), units)
    assert got == {"ahb": "ahb", "hc": None, "sr": None} and ran == ["ahb", "hc"]  # sr's body never ran
    assert missing_marker(outs["ahb"]) is None
    assert "hc dataset offline" in missing_marker(outs["hc"]) and missing_marker(outs["sr"]) == "sr data: gated"
    rec = json.loads(sidecar_path(str(outs["ahb"])).read_text())
    assert list(rec["inputs"]) == [str(ok_in)] and rec["config_slice"] == {"k": 1}
    # a real failure still fails the job
    units[0]["body"] = lambda: 1 / 0
    with pytest.raises(ZeroDivisionError):
        run_each(FakeSM("judge", [], list(outs.values()), tmp_path), units[:1])
