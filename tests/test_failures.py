"""Failures are failures: only a data set that cannot be had right now (offline and not cached,
gated, hub unreachable: doctune.workflow.hub.hub_problem) makes a job's outputs `missing`.
A wrong split or config name fails the job in one line naming the benchmark and the dataset, and a
misspelled lm-eval task name stops preflight (and the job) with a did-you-mean. All offline."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from doctune.io import DatasetError, missing_marker
from doctune.workflow.pipeline import data_unavailable, run, run_each
from harness.snakemake_stub import FakeSM as _FakeSM

datasets = pytest.importorskip("datasets")

REPO = Path(__file__).resolve().parents[1]


def FakeSM(rule, outputs, tmp):
    return _FakeSM(rule, [], outputs, tmp)


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # provenance sidecars go under ./results
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def local_dataset(tmp_path) -> Path:
    """A dataset folder in the hub layout (one split, 'train'), loaded by `datasets` offline."""
    d = tmp_path / "local-dataset"
    d.mkdir()
    (d / "train.jsonl").write_text("".join(json.dumps({"id": str(i), "prompt": f"q{i}"}) + "\n" for i in range(3)))
    return d


def one_line_stop(exc_info, log: Path, *needles: str) -> str:
    """The job exited with status 1 and logged one line (no traceback) holding the needles."""
    assert exc_info.value.code == 1
    text = log.read_text()
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if " stopped: " in ln]
    assert len(lines) == 1, text
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# --------------------------------------------------------------------------------------------
# a wrong split or config name fails the job
# --------------------------------------------------------------------------------------------

def test_wrong_split_of_a_benchmark_dataset_fails_the_job_in_one_line(tmp_path, local_dataset):
    """The benchmark loaders' path (kinds.common.load_hf_rows) in the per-benchmark harness
    (run_each, as rule completions runs it): exit status 1, the benchmark, the dataset and the
    split in one line; no missing marker."""
    from doctune.evaluation.kinds.common import load_hf_rows

    data = tmp_path / "rows.jsonl"
    data.write_text('{"a": 1}\n{"a": 2}\n')
    assert load_hf_rows("json", None, "train", data_files=str(data)) == [{"a": 1}, {"a": 2}]
    outs = {b: tmp_path / f"results/completions/m/{b}.jsonl" for b in ("mybench", "other")}
    with pytest.raises(DatasetError) as err:
        load_hf_rows("json", None, "tset", data_files=str(data))
    assert not data_unavailable(err.value)

    def unit(name, split):
        return {"name": name, "outputs": [outs[name]], "inputs": [], "config": {},
                "body": lambda: load_hf_rows("json", None, split, data_files=str(data))}

    with pytest.raises(SystemExit) as stop:
        run_each(FakeSM("completions", list(outs.values()), tmp_path),
                 [unit("mybench", "tset"), unit("other", "train")])
    one_line_stop(stop, tmp_path / "logs/completions.log", "rule completions/mybench stopped:",
                  "HuggingFace dataset 'json'", "split='tset'", 'Unknown split "tset"', "['train']")
    assert not outs["mybench"].exists() and not outs["other"].exists()


@pytest.mark.parametrize("source, needle", [({"split": "tset"}, 'Unknown split "tset"'),
                                            ({"name": "nope"}, "BuilderConfig 'nope' not found")])
def test_wrong_split_or_config_of_the_posttrain_dataset_fails_the_job(tmp_path, local_dataset, source, needle):
    """A single-job rule (run): posttrain_data on a dataset read offline from a local folder."""
    from doctune.data.posttrain import write_posttrain

    out = tmp_path / "results/data/posttrain-2.jsonl"
    src = {"dataset": str(local_dataset), "format": "alpaca", **source}
    with pytest.raises(SystemExit) as stop:
        run(FakeSM("posttrain_data", [out], tmp_path), lambda: write_posttrain(src, 2, 0, str(out)))
    one_line_stop(stop, tmp_path / "logs/posttrain_data.log", "rule posttrain_data stopped:",
                  "posttrain_data.source.dataset", str(local_dataset), needle)
    assert not out.exists()


def test_a_bug_still_fails_with_its_traceback(tmp_path):
    out = tmp_path / "results/completions/m/b.jsonl"

    def body():
        return {}["no such key"]

    with pytest.raises(KeyError):
        run_each(FakeSM("completions", [out], tmp_path),
                 [{"name": "b", "outputs": [out], "inputs": [], "config": {}, "body": body}])
    assert "Traceback" in (tmp_path / "logs/completions.log").read_text() and not out.exists()


# --------------------------------------------------------------------------------------------
# a dataset that cannot be had right now is still missing
# --------------------------------------------------------------------------------------------

def test_unreachable_hub_dataset_offline_is_still_missing(tmp_path):
    from doctune.evaluation.kinds.common import BenchmarkUnavailable, load_hf_rows

    out = tmp_path / "results/completions/m/hubbench.jsonl"
    body = lambda: load_hf_rows("no-such-org/no-such-dataset", None, "train")   # noqa: E731
    with pytest.raises(BenchmarkUnavailable, match="no-such-org/no-such-dataset.*offline"):
        body()
    got = run_each(FakeSM("completions", [out], tmp_path),
                   [{"name": "hubbench", "outputs": [out], "inputs": [], "config": {}, "body": body}])
    assert got == {"hubbench": None}
    assert "no-such-org/no-such-dataset" in missing_marker(out) and "offline" in missing_marker(out)
    # an unwrapped load_dataset call (the error raised inside `datasets`) is classified the same way
    with pytest.raises(Exception) as raw:
        datasets.load_dataset("no-such-org/no-such-dataset", split="train")
    assert data_unavailable(raw.value)


def test_hub_problem_is_the_one_classification():
    """hub.hub_problem: gated, offline and unreachable make data missing; no such repository
    is the user's to fix; anything else is no hub problem."""
    import httpx
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from doctune.workflow.hub import UNAVAILABLE, hub_problem

    def status(exc, env=None):
        return (hub_problem(exc, env or {}) or ("none",))[0]

    def raised_from(outer, inner):
        try:
            try:
                raise inner
            except Exception as e:
                raise outer from e
        except Exception as e:  # noqa: BLE001
            return e

    assert status(DatasetNotFoundError("Dataset 'x/y' is a gated dataset on the Hub.")) == "gated"
    assert status(DatasetNotFoundError("Dataset 'x/y' doesn't exist on the Hub or cannot be accessed.")) == "not_found"
    assert status(DatasetNotFoundError("Revision 'abc' doesn't exist for dataset 'x/y' on the Hub.")) == "not_found"
    assert status(raised_from(ConnectionError("Couldn't reach 'x/y' on the Hub (OfflineModeIsEnabled)"),
                              OfflineModeIsEnabled("offline"))) == "offline"
    assert status(httpx.ConnectError("no route to host")) == "unreachable"
    assert status(httpx.ConnectError("no route"), {"HF_DATASETS_OFFLINE": "1"}) == "offline"
    down = HfHubHTTPError("503", response=httpx.Response(503, request=httpx.Request("GET", "https://hf.co")))
    assert status(down) == "unreachable"
    teapot = HfHubHTTPError("418", response=httpx.Response(418, request=httpx.Request("GET", "https://hf.co")))
    assert status(teapot) == "none"
    # wrapped by our loaders: still found
    assert status(raised_from(DatasetError("benchmark data"), httpx.ReadTimeout("slow"))) == "unreachable"
    for exc in (ValueError('Unknown split "tset". Should be one of [\'train\']'), KeyError("col"),
                FileNotFoundError("Unable to find '/x/none.jsonl'")):
        assert status(exc) == "none"
    assert set(UNAVAILABLE) == {"offline", "gated", "unreachable"}


# --------------------------------------------------------------------------------------------
# lm-eval task names
# --------------------------------------------------------------------------------------------

@pytest.fixture
def lm_eval_tasks(tmp_path, monkeypatch):
    """The task list in a fresh cache folder, listed by lm-eval's real TaskManager restricted to
    HellaSwag's folder (the full index takes ~8 s; it is what runs outside the tests)."""
    lt = pytest.importorskip("lm_eval.tasks")
    from doctune.evaluation.kinds.lm_eval import tasks

    monkeypatch.setenv("DOCTUNE_CACHE", str(tmp_path / "cache"))
    folder = tasks.task_folders(["hellaswag"])["hellaswag"]
    real = lt.TaskManager
    built = []

    class OneFolder(real):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(include_path=[str(folder)], include_defaults=False)

    monkeypatch.setattr(lt, "TaskManager", OneFolder)
    tasks._task_list.cache_clear()
    yield built
    tasks._task_list.cache_clear()


def test_misspelled_lm_eval_task_stops_preflight_with_a_suggestion(tmp_path, monkeypatch, lm_eval_tasks):
    import shutil

    import yaml

    from doctune.evaluation.kinds.lm_eval import tasks
    from doctune.workflow.preflight import preflight

    shutil.copytree(REPO / "resources", tmp_path / "resources")
    monkeypatch.chdir(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    name = next(n for n, b in cfg["benchmarks"].items() if b.get("kind") == "lm_eval")
    cfg["benchmarks"][name]["task"] = "hellaswg"
    report = preflight(cfg, REPO / "config" / "schema.yaml", env={}, hub=lambda *a: ("ok", ""))
    assert len(report.errors) == 1, report.errors
    line = report.errors[0]
    assert "\n" not in line and line.startswith(f"config key 'benchmarks.{name}.task'")
    assert "'hellaswg'" in line and "did you mean 'hellaswag'?" in line
    # the list was built once and kept per lm-eval version; the next process reads it
    path = tasks.task_list_file(tasks.lm_eval_version())
    assert lm_eval_tasks == [1] and "hellaswag" in json.loads(path.read_text())["tasks"]
    tasks._task_list.cache_clear()
    assert tasks.task_problem("hellaswag") is None and "did you mean 'hellaswag'" in tasks.task_problem("hellaswg")
    assert lm_eval_tasks == [1]
    # a correct name passes
    cfg["benchmarks"][name]["task"] = "hellaswag"
    assert preflight(cfg, REPO / "config" / "schema.yaml", env={}, hub=lambda *a: ("ok", "")).errors == []


def test_misspelled_lm_eval_task_fails_the_job_before_loading_the_model(tmp_path, monkeypatch, lm_eval_tasks):
    from doctune.evaluation.kinds.lm_eval import run_lm_eval

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded for a task lm-eval does not know")

    monkeypatch.setattr("doctune.models.load_model", no_model)
    out = tmp_path / "results/lm_eval/m/hs.json"
    body = lambda: run_lm_eval({"name": "m"}, {"task": "hellaswg", "limit": 2}, str(out), None)  # noqa: E731
    with pytest.raises(SystemExit) as stop:
        run_each(FakeSM("lm_eval", [out], tmp_path),
                 [{"name": "hs", "outputs": [out], "inputs": [], "config": {}, "body": body}])
    one_line_stop(stop, tmp_path / "logs/lm_eval.log", "rule lm_eval/hs stopped:", "config key 'task'",
                  "'hellaswg'", "did you mean 'hellaswag'?")
    assert not out.exists()
