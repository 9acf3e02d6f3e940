"""End to end: the whole demo DAG in a temporary copy of the repository, then partial reruns,
the report and the provenance trail on the finished run."""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
RUN = Path("runs/tiny")  # the demo config's run folder (run_name: demo)

pytestmark = pytest.mark.slow


def copy_repo(dst: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst


def smk(workdir: Path, *args: str, check: bool = True, timeout: int = 1500) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(SNAKEMAKE + list(args), cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def planned_jobs(workdir: Path, configfile: str) -> dict[str, int]:
    """Rule -> job count of a dry run (empty when nothing would run)."""
    out = smk(workdir, "results/summary.tsv", "results/stats/comparisons.tsv", "--configfile", configfile,
              "-n", "-c1").stdout
    jobs: dict[str, int] = {}
    m = re.search(r"Job stats:\n(.*?)\n\n", out + "\n\n", re.S)
    if not m:
        return jobs
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("demo"))
    smk(work, "--configfile", "config/tiny.yaml", "-c2")
    return work


def read_summary(path: Path) -> list[dict]:
    lines = [l for l in path.read_text().splitlines() if not l.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


EXPECTED = {
    "ahb": ["overall_mean", "dimension_normalized_avg"],
    "compassion": ["overall_mean", "dimension_normalized_avg"],
    "ai_risk": ["matching_rate", "matching_prob"],
    "strongreject": ["score", "refusal_rate"],
    "lm_eval": ["acc", "acc_norm"],
    "probe": ["margin", "margin_sum", "preference_rate", "preference_rate_sum"],
}


def test_summary_has_every_model_benchmark_metric(demo_run):
    from doctune.workflow.config import eval_models, validate_config

    cfg = validate_config(yaml.safe_load((demo_run / "config/tiny.yaml").read_text()),
                          demo_run / "config/schema.yaml")
    text = (demo_run / RUN / "results/summary.tsv").read_text()
    assert "DEMO" in text.splitlines()[0], "the demo summary must say its numbers only exercise the pipeline"
    rows = read_summary(demo_run / RUN / "results/summary.tsv")
    have = {(r["model"], r["benchmark"], r["metric"]) for r in rows}
    models = eval_models(cfg)
    assert {"base", "doc", "instruct", "control", "doc.post4", "instruct.post4"} <= set(models)
    for model in models:
        for bench, bcfg in cfg["benchmarks"].items():
            for metric in EXPECTED[bcfg["kind"]]:
                assert (model, bench, metric) in have, f"summary lacks {model} / {bench} / {metric}"
    # AHB per-dimension rows exist too
    assert any(r["benchmark"] == "ahb" and r["metric"].startswith("dimension:") for r in rows)
    # values are numbers computed from the files before them, or explicitly missing (never a fake 0)
    for r in rows:
        if r["value"] != "":
            float(r["value"])


def test_sweep_dose_response_and_contamination(demo_run):
    """The tiny config's sweep (doc~n_docs=2, doc~n_docs=4): each point trained on a prefix of the
    corpus and says which documents it saw; the dose-response table, its figure and summary rows;
    the contamination guard's tables and counts for every source x benchmark."""
    import json

    from doctune.io import read_jsonl

    res = demo_run / RUN / "results"
    docs = [d["id"] for d in read_jsonl(res / "documents/animal_welfare_ai.jsonl")]
    for n in (2, 4):
        assert [d["id"] for d in read_jsonl(res / f"documents/animal_welfare_ai.first{n}.jsonl")] == docs[:n]
        state = json.loads((res / f"models/doc~n_docs={n}/trainer_state.json").read_text())
        assert state["data_stats"]["document_ids"] == docs[:n]
    lines = [x for x in (res / "stats/dose_response.tsv").read_text().splitlines() if not x.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    cfg = yaml.safe_load((demo_run / "config/tiny.yaml").read_text())
    for bench in cfg["benchmarks"]:
        points = [r for r in rows if r["benchmark"] == bench and r["row_type"] == "point" and r["stage"] == "trained"]
        assert sorted(r["model"] for r in points) == ["doc~n_docs=2", "doc~n_docs=4"], bench
        assert all(r["train_tokens"] and r["control"] == "control" for r in points)
        assert [r for r in rows if r["benchmark"] == bench and r["row_type"] == "trend"], bench
    assert (res / "plots/dose_docs.png").stat().st_size > 10_000
    summary = read_summary(res / "summary.tsv")
    assert {r["benchmark"] for r in summary if r["model"] == "sweep:docs"} == set(cfg["benchmarks"])
    contam = [r for r in summary if r["model"].startswith("contamination:")]
    sources = {"animal_welfare_ai", "urban_density", "data.instruct", "probes.welfare_probe", "probes.urban_probe"}
    assert {r["model"].split(":", 1)[1] for r in contam} == sources
    assert len(contam) == len(sources) * len(cfg["benchmarks"]) - 2      # a probe set is not checked against itself
    assert all(r["status"] == "ok" and r["value"] != "" for r in contam), contam
    for s in sources:
        assert (res / f"contamination/{s}.tsv").stat().st_size > 0


def test_summary_values_trace_back_to_metrics_files(demo_run):
    import json

    rows = [r for r in read_summary(demo_run / RUN / "results/summary.tsv")
            if not r["metric"].startswith(("manipulation", "judge_gate"))]
    for r in rows[:50]:
        m = json.loads((demo_run / RUN / f"results/metrics/{r['model']}/{r['benchmark']}.json").read_text())
        v = m["metrics"][r["metric"]]["value"]
        if v is None:
            assert r["value"] == ""
        else:
            assert abs(float(r["value"]) - v) <= 1e-9 * max(1.0, abs(v))   # 10 significant digits


def test_comparisons_table(demo_run):
    lines = [l for l in (demo_run / RUN / "results/stats/comparisons.tsv").read_text().splitlines() if not l.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    assert list(rows[0])[:10] == ["benchmark", "metric", "model_a", "model_b", "diff", "ci_low", "ci_high",
                                  "p_value", "test", "n"]
    pairs = {(r["model_a"], r["model_b"]) for r in rows}
    assert {("doc", "instruct"), ("doc.post4", "instruct.post4"), ("doc", "control")} <= pairs


def test_manipulation_check_and_judge_gate_run_end_to_end(demo_run):
    """The judge-free manipulation check (doc vs control on both probes, each against the base) heads
    the summary; every judged benchmark's judges were scored on labelled answers before the metrics,
    and the metrics, summary and comparisons carry the gate's verdict."""
    import json

    from doctune.analysis.manipulation import read_manipulation

    run = demo_run / RUN / "results"
    rows = read_manipulation(str(run / "stats/manipulation.tsv"))
    assert rows[0]["row_type"] == "verdict" and (rows[0]["arm"], rows[0]["control"]) == ("doc", "control")
    assert rows[0]["verdict"] and rows[0]["tokens_arm"] > 0 and rows[0]["tokens_control"] > 0
    comps = {r["comparison"]: r for r in rows[1:]}
    assert set(comps) == {"own", "other", "arm_vs_base", "control_vs_base"}
    assert comps["own"]["probe"] == "welfare_probe" and comps["other"]["probe"] == "urban_probe"
    assert all(r["n"] == 12 and r["p_value"] is not None for r in comps.values())
    assert "items share a run of 8 words" in comps["own"]["note"]
    summary = read_summary(run / "summary.tsv")
    assert summary[0]["metric"] == "manipulation_check" and summary[0]["model"] == "doc vs control"
    for bench in ("ahb", "human_compassion", "strongreject"):
        gate = json.loads((run / f"judge_gate/{bench}.json").read_text())
        assert gate["status"] in ("passed", "failed") and gate["judges"]["tiny_judge"]["n_answers"] > 0
        m = json.loads((run / f"metrics/doc/{bench}.json").read_text())
        assert m["judge_gate"]["status"] == gate["status"]
        assert {r["judge_gate"] for r in summary if r["benchmark"] == bench and r["model"] == "doc"} == {gate["status"]}
        assert any(r["metric"] == "judge_gate:kappa" and r["benchmark"] == bench for r in summary)
    assert (run / "plots/manipulation.png").stat().st_size > 5000


def test_plots_and_logs_exist(demo_run):
    for p in ["robustness.png", "dimension_profile.png", "overview.png", "loss_curves.png"]:
        assert (demo_run / RUN / "results/plots" / p).stat().st_size > 1000
    assert (demo_run / RUN / "results/logs/train/doc.log").exists()
    assert (demo_run / RUN / "results/benchmarks/train/doc.tsv").exists()


def test_nothing_reruns_when_nothing_changed(demo_run):
    assert planned_jobs(demo_run, "config/tiny.yaml") == {}


def _edited_config(demo_run: Path, name: str, edit) -> str:
    cfg = yaml.safe_load((demo_run / "config/tiny.yaml").read_text())
    edit(cfg)
    path = demo_run / "config" / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return f"config/{name}"


def test_judge_setting_reruns_only_judging_and_after(demo_run):
    def edit(cfg):
        cfg["judges"]["tiny_judge"]["temperature"] = 0.5

    jobs = planned_jobs(demo_run, _edited_config(demo_run, "edit_judge.yaml", edit))
    assert jobs.get("judge", 0) > 0
    assert not {"documents", "specs", "train_arm", "post_train", "completions", "instruct_data"} & set(jobs), jobs


def test_lora_setting_reruns_that_arm_and_after(demo_run):
    def edit(cfg):
        cfg["arms"]["control"]["training"] = {"lora": {"r": 2}}

    jobs = planned_jobs(demo_run, _edited_config(demo_run, "edit_lora.yaml", edit))
    assert jobs.get("train_arm") == 1, jobs
    assert not {"documents", "specs", "instruct_data", "post_train"} & set(jobs), jobs  # control is not post-trained
    assert jobs.get("completions", 0) > 0


def test_report_builds_offline(demo_run):
    smk(demo_run, "--configfile", "config/tiny.yaml", "--report", "report.html")
    html = (demo_run / RUN / "report.html").read_text(errors="ignore")  # paths are relative to the run folder
    assert "robustness" in html.lower()
    # a category named like one of the report's own panels (Workflow, Statistics) clashes with
    # its link target in every caption
    assert "Duplicate explicit target name" not in html


def test_provenance_trace(demo_run):
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "doctune.cli", "trace", "results/summary.tsv"], cwd=demo_run / RUN,
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "results/specs/" in out and "current" in out.lower()
    assert "GEMINI" not in out and "API_KEY" not in out


@pytest.mark.parametrize("module,reruns,untouched", [
    # one module of each stage: the rules whose scripts import it rerun, with what follows them
    ("documents/validate.py", {"specs", "documents", "train_arm"}, {"build_tiny_model", "base_model_spec"}),
    ("data/posttrain.py", {"posttrain_data", "post_train"}, {"documents", "specs", "train_arm", "instruct_data"}),
    ("training/step.py", {"train_arm", "post_train", "completions"},
     {"documents", "specs", "instruct_data", "posttrain_data"}),
    ("evaluation/completions.py", {"completions", "judge", "metrics", "summary"},
     {"score_logprob", "lm_eval", "train_arm", "post_train", "documents"}),
    ("analysis/stats.py", {"comparisons", "summary"},
     {"train_arm", "post_train", "completions", "judge", "metrics", "documents", "score_logprob"}),
    # a benchmark kind counts only for the jobs of its benchmarks (and what reads every benchmark)
    ("evaluation/kinds/ai_risk/__init__.py", {"score_logprob", "metrics", "summary"},
     {"completions", "judge", "judge_gate", "lm_eval", "train_arm", "documents"}),
])
def test_package_code_change_reruns_its_rules_and_only_those(demo_run, module, reruns, untouched):
    path = demo_run / "src" / "doctune" / module
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        jobs = planned_jobs(demo_run, "config/tiny.yaml")
    finally:
        path.write_text(original)
    assert reruns <= set(jobs), jobs
    assert not untouched & set(jobs), jobs
    assert planned_jobs(demo_run, "config/tiny.yaml") == {}     # reverted: the same hash, nothing runs


def test_rating_sample_and_agreement_on_the_finished_run(demo_run, tmp_path):
    """The rating sample and the agreement of a rater with the judge, on the judged benchmarks of the
    finished tiny run (read-only): no model or judge name leaks into what raters see."""
    from doctune.analysis.agreement import agreement_summary_rows, compute_agreement
    from doctune.io import read_json
    from test_agreement import _rows, export, write_ratings

    res_dir = demo_run / RUN / "results"
    scores, comps = {}, {}
    for mdir in sorted((res_dir / "completions").iterdir()):
        for c in sorted(mdir.glob("*.jsonl")):
            s = res_dir / "scores" / mdir.name / c.name
            if s.exists():
                scores.setdefault(mdir.name, {})[c.stem] = str(s)
                comps.setdefault(mdir.name, {})[c.stem] = str(c)
    assert scores, "the tiny run has judged benchmarks"
    n, csv_p, html_p, key_p = export(tmp_path, scores, comps, per=2, seed=0)
    assert n > 0
    key = read_json(key_p)
    judges = sorted({j for u in key["units"] for j in u["judges"]})
    secrets = [m for m in scores if len(m) > 4] + judges
    for p in (csv_p, html_p):
        text = Path(p).read_text(encoding="utf-8")
        for s in secrets:
            assert s not in text, (p, s)
    ratings = []
    for i, u in enumerate(key["units"]):
        lab = u["judges"][judges[0]]["label"]
        ratings.append((u["rating_id"], "tester", "" if lab is None else (lab if i % 4 else 1 - lab)))
    rp = write_ratings(tmp_path / "ratings.csv", ratings)
    res = compute_agreement(str(key_p), rp, str(tmp_path / "agreement.json"), n_bootstrap=100, scores=scores)
    assert res["status"] == "ok"
    overall = _rows(res, f"human~{judges[0]}")
    assert overall["raw_agreement"]["value"] is not None and overall["raw_agreement"]["value"] < 1.0
    rows = agreement_summary_rows(str(tmp_path / "agreement.json"))
    assert any(r["metric"] == "raw_agreement:all" and r["status"] == "ok" for r in rows)
