"""Inspect export: our completions and verdicts as an Inspect .eval log, read back with Inspect's
own reader, its `inspect log dump` CLI and its viewer's API, and checked against our files."""
import json
import math
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")

from doctune.evaluation.judging import judge_completions  # noqa: E402
from doctune.evaluation.metrics import compute_metrics  # noqa: E402
from doctune.evaluation.inspect_log import export_eval_log  # noqa: E402
from doctune.io import DataError, read_json, read_jsonl, write_jsonl  # noqa: E402

from test_judging import FakeGen  # noqa: E402


def _judged(tmp_path, bench_cfg, ids, epochs, reply, name="ahb"):
    comp = tmp_path / "completions.jsonl"
    write_jsonl(comp, [{"id": i, "epoch": e, "prompt": f"question {i}", "completion": f"answer {i}/{e}",
                        "finish_reason": "length" if e else "stop", "input_tokens": 5, "output_tokens": 7,
                        "generation": {"temperature": 1.0, "seed": e}}
                       for i in ids for e in epochs])
    scores = tmp_path / "scores.jsonl"
    judge_completions(str(comp), name, bench_cfg, {"ja": {"backend": "fake"}, "jb": {"backend": "fake"}},
                      str(scores), str(tmp_path / "cache"),
                      backends={"ja": FakeGen(reply), "jb": FakeGen(reply, model_id="other-judge")})
    metrics = tmp_path / "metrics.json"
    compute_metrics("doc", name, bench_cfg, str(scores), str(metrics), n_bootstrap=50, seed=0)
    return comp, scores, metrics


def _ahb_reply(prompt, seed):
    # a deterministic mix of 0, 1 and unparseable verdicts (the latter become null after retries)
    h = sum(map(ord, prompt)) % 5
    return {0: '{"reasoning": "r", "score": 0}', 1: '{"reasoning": "r", "score": 1}',
            2: '{"reasoning": "r", "score": 1}', 3: '{"reasoning": "r", "score": 0}', 4: "no idea"}[h]


def test_ahb_export_reads_back_with_inspect(tmp_path, repo_root):
    from inspect_ai.log import read_eval_log

    cfg = {"kind": "ahb", "source": {"path": str(repo_root / "resources/fixtures/ahb")}, "judge_format": "json"}
    comp, scores, metrics = _judged(tmp_path, cfg, ["1", "2", "4"], (0, 1), _ahb_reply)
    out = tmp_path / "inspect" / "doc" / "ahb.eval"
    summary = export_eval_log("doc", "ahb", cfg, str(comp), str(scores), str(out), str(metrics))
    log = read_eval_log(str(out))
    comp_rows, score_rows, m = read_jsonl(comp), read_jsonl(scores), read_json(metrics)

    assert log.status == "success" and log.eval.task == "doctune/ahb" and log.eval.model == "doctune/doc"
    assert len(log.samples) == len(comp_rows) == summary["samples"] == 6
    assert log.results.total_samples == 6 and log.eval.config.epochs == 2
    assert log.eval.dataset.sample_ids == ["1", "2", "4"]
    by_key = {(s.id, s.epoch): s for s in log.samples}
    units = defaultdict(list)
    for r in score_rows:
        units[(r["item_id"], r["epoch"] + 1)].append(r)
    for r in comp_rows:
        s = by_key[(r["id"], r["epoch"] + 1)]
        assert s.output.completion == r["completion"] and s.input[-1].text == r["prompt"]
        assert s.output.stop_reason == ("max_tokens" if r["finish_reason"] == "length" else "stop")
        assert s.metadata["doctune_epoch"] == r["epoch"] and "tags" in s.metadata
        sc = s.scores["ahb"]
        got = sorted((v["unit_id"], v["judge"], v["score"]) for v in sc.metadata["verdicts"])
        want = sorted((u["unit_id"], u["judge"], u["score"]) for u in units[(s.id, s.epoch)])
        assert got == want and len(got) > 0
    # the mean of a sample metric over a question's epochs is that question's per-item score in our metrics
    for metric, per_item in m["items"].items():
        for item, value in per_item.items():
            vals = [by_key[(item, e)].scores["ahb"].value for e in (1, 2)]
            vals = [v[metric] for v in vals if isinstance(v, dict) and metric in v]
            assert vals and sum(vals) / len(vals) == pytest.approx(value), (metric, item)
    # the header carries our aggregate metrics, and nothing invented for missing ones
    head = log.results.scores[0]
    for name, v in m["metrics"].items():
        if v["value"] is None:
            assert name not in head.metrics and name in log.results.metadata["missing_metrics"]
        else:
            assert head.metrics[name].value == pytest.approx(v["value"])
            assert head.metrics[name].metadata["n"] == v["n"]
    assert any(v["score"] is None for s in log.samples for v in s.scores["ahb"].metadata["verdicts"])


def test_unscored_sample_is_nan_not_zero_and_cli_and_viewer_read_it(tmp_path, repo_root):
    cfg = {"kind": "strongreject", "source": {"path": str(repo_root / "resources/fixtures/strongreject_small.csv")},
           "max_items": 3, "judge_format": "json"}

    def reply(prompt, seed):  # prompt 0 is never parseable; the others get a rubric verdict
        if "question" not in prompt:
            return "no idea"
        return '{"reasoning": "r", "refused": 0, "convincing": 4, "specific": 3}'

    comp, scores, metrics = _judged(tmp_path, cfg, ["0", "1", "2"], (0,), reply, name="strongreject")
    rows = read_jsonl(scores)
    # make item 0's verdicts null (unparseable), as a judge failing on it would
    for r in rows:
        if r["item_id"] == "0":
            r["score"], r["fields"] = None, None
    write_jsonl(scores, rows)
    compute_metrics("doc", "strongreject", cfg, str(scores), str(metrics), n_bootstrap=20, seed=0)
    logdir = tmp_path / "logs"
    out = logdir / "strongreject.eval"
    export_eval_log("doc", "strongreject", cfg, str(comp), str(scores), str(out), str(metrics))

    # `inspect log dump` of the pinned version
    inspect_bin = Path(sys.executable).with_name("inspect")
    dump = subprocess.run([str(inspect_bin), "log", "dump", str(out)], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    data = json.loads(dump.stdout)
    assert len(data["samples"]) == 3
    vals = {s["id"]: s["scores"]["strongreject"]["value"] for s in data["samples"]}
    assert vals["1"]["score"] == pytest.approx(5 / 8) and vals["2"]["refusal_rate"] == 0
    assert vals["0"] in ("NaN", None) or (isinstance(vals["0"], float) and math.isnan(vals["0"]))
    assert data["results"]["scores"][0]["unscored_samples"] == 1

    # the viewer's own API (what `inspect view` serves) lists and opens it
    from fastapi.testclient import TestClient
    from inspect_ai._view.fastapi_server import view_server_app

    client = TestClient(view_server_app(default_dir=str(logdir)))
    listing = client.get("/logs", params={"log_dir": str(logdir)})
    assert listing.status_code == 200 and any(f["name"].endswith("strongreject.eval") for f in listing.json()["files"])
    full = client.get(f"/logs/{out}")
    assert full.status_code == 200 and full.json()["eval"]["task"] == "doctune/strongreject"
    assert len(full.json()["samples"]) == 3


def test_export_rejects_verdicts_without_completion(tmp_path, repo_root):
    cfg = {"kind": "ahb", "source": {"path": str(repo_root / "resources/fixtures/ahb")}, "judge_format": "json"}
    comp, scores, metrics = _judged(tmp_path, cfg, ["1"], (0,), _ahb_reply)
    rows = read_jsonl(scores)
    write_jsonl(scores, rows + [dict(rows[0], item_id="2")])
    with pytest.raises(DataError, match="item '2' epoch 0 have no completion"):
        export_eval_log("doc", "ahb", cfg, str(comp), str(scores), str(tmp_path / "x.eval"), str(metrics))
    assert not (tmp_path / "x.eval").exists() and not list(tmp_path.glob(".x.eval*"))


@pytest.mark.slow
def test_rule_writes_log_matching_our_files(tmp_path):
    """The inspect_export rule on the demo config (base model only): one sample per completion."""
    from inspect_ai.log import read_eval_log
    from test_e2e_demo import RUN, copy_repo, smk

    repo = copy_repo(tmp_path)
    target = "results/inspect/base/strongreject.eval"
    smk(repo, target, "--configfile", "config/tiny.yaml", "-c2")
    work = repo / RUN  # the demo's run folder: target paths are relative to it
    log = read_eval_log(str(work / target))
    comp = read_jsonl(work / "results/completions/base/strongreject.jsonl")
    scores = read_jsonl(work / "results/scores/base/strongreject.jsonl")
    assert len(log.samples) == len(comp) > 0
    assert sum(len(s.scores["strongreject"].metadata["verdicts"]) for s in log.samples) == len(scores)
    assert (work / "results/logs/inspect_export/base/strongreject.log").exists()
    assert (work / "results/provenance").is_dir()


def test_missing_data_gives_an_error_log_with_the_reason(tmp_path, repo_root):
    from inspect_ai.log import read_eval_log

    from doctune.io import write_missing_marker

    cfg = {"kind": "strongreject", "source": {"path": str(repo_root / "resources/fixtures/strongreject_small.csv")}}
    comp, scores = tmp_path / "c.jsonl", tmp_path / "s.jsonl"
    write_missing_marker(comp, "dataset x is gated")
    write_missing_marker(scores, "dataset x is gated")
    out = tmp_path / "x.eval"
    summary = export_eval_log("doc", "strongreject", cfg, str(comp), str(scores), str(out))
    assert summary["samples"] == 0 and "gated" in summary["missing"]
    log = read_eval_log(str(out))
    assert log.status == "error" and "dataset x is gated" in log.error.message and log.eval.model == "doctune/doc"
