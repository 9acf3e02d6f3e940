"""lm-eval through its Python API: HellaSwag from a local file, and the missing-data path."""
import json

import pytest

pytest.importorskip("lm_eval")

from doctune.evaluation.kinds.lm_eval import run_lm_eval  # noqa: E402
from doctune.io import DataError, read_json  # noqa: E402


def test_local_hellaswag(tmp_path, repo_root, tiny_spec, monkeypatch):
    # a relative local_file must work from any working directory: it is made absolute first
    monkeypatch.chdir(repo_root)
    out = tmp_path / "hellaswag.json"
    cache = tmp_path / "cache"
    doc = run_lm_eval(tiny_spec, {"task": "hellaswag", "local_file": "resources/fixtures/hellaswag_sample.jsonl",
                                  "limit": 6, "batch_size": 4}, str(out), str(cache))
    assert read_json(out) == json.loads(json.dumps(doc))
    assert doc["status"] == "ok" and doc["reason"] is None and doc["task"] == "hellaswag"
    assert doc["n"] == 6
    assert sorted(doc["per_item"], key=int) == [str(i) for i in range(6)]
    assert all(set(v) == {"acc", "acc_norm"} and set(v.values()) <= {0, 1} for v in doc["per_item"].values())
    res = doc["results"]
    assert set(res) == {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"}
    # per-document acc and acc_norm kept: their means are lm-eval's own numbers
    assert res["acc"] == pytest.approx(sum(v["acc"] for v in doc["per_item"].values()) / 6)
    assert res["acc_norm"] == pytest.approx(sum(v["acc_norm"] for v in doc["per_item"].values()) / 6)
    assert res["acc_stderr"] is not None
    assert doc["lm_eval_version"]
    assert doc["local_file"].startswith("/")
    # the response cache is per model: its folder carries the model's name
    assert [p.name.split("-")[0] for p in cache.iterdir()] == ["base"]


def test_missing_dataset_does_not_raise(tmp_path, tiny_spec, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def no_model(*a, **k):
        raise AssertionError("the model must not be loaded when the data is missing")

    monkeypatch.setattr("doctune.models.load_model", no_model)
    out = tmp_path / "hs.json"
    doc = run_lm_eval(tiny_spec, {"task": "hellaswag", "limit": 4}, str(out), None)
    assert doc["status"] == "missing" and "hellaswag" in doc["reason"]
    assert all(v is None for v in doc["results"].values()) and doc["n"] is None
    assert read_json(out)["status"] == "missing"


def test_bad_local_file(tmp_path, tiny_spec):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"activity_label": "x", "ctx_a": "a", "ctx_b": "b", "endings": ["1", "2"],
                               "label": "0"}) + "\n\n" + json.dumps({"ctx_a": "a"}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:3"):
        run_lm_eval(tiny_spec, {"task": "hellaswag", "local_file": str(bad)}, str(tmp_path / "o.json"), None)
    with pytest.raises(FileNotFoundError, match="local_file"):
        run_lm_eval(tiny_spec, {"task": "hellaswag", "local_file": str(tmp_path / "none.jsonl")},
                    str(tmp_path / "o.json"), None)
    with pytest.raises(ValueError, match="task"):
        run_lm_eval(tiny_spec, {}, str(tmp_path / "o.json"), None)


def test_task_index_covers_the_needed_task_only(monkeypatch):
    """task_manager indexes the folder of a named task (not lm-eval's 14k tasks), finds the same
    YAML file as lm-eval's full index, needs no index for local configs, and falls back to the
    full index for a name it cannot place."""
    import lm_eval.tasks as lt

    from doctune.evaluation.kinds.lm_eval.tasks import task_folders, task_manager

    tm = task_manager(["hellaswag"])
    assert "hellaswag" in tm.all_tasks and len(tm.all_tasks) < 20
    root = lt.TaskManager  # the real class, before it is replaced below
    folder = task_folders(["hellaswag"])["hellaswag"]
    entry = tm.task_index["hellaswag"]
    yaml_path = entry["yaml_path"] if isinstance(entry, dict) else entry.yaml_path
    assert str(yaml_path) == str(folder / "hellaswag.yaml")
    assert len(task_manager([{"task": "local_x"}]).all_tasks) == 0

    calls = []

    class Recorder(root):
        def __init__(self, *a, **k):
            calls.append(k)
            if k.get("include_defaults", True):  # the full index: not built here (slow), just recorded
                return
            super().__init__(*a, **k)

    monkeypatch.setattr(lt, "TaskManager", Recorder)
    task_manager(["no_such_task_xyz"])
    assert calls == [{}]  # fell back to lm-eval's own full index
