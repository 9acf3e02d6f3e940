"""Experiment tracking (doctune.training.tracking, config key `tracking:`): off by default, offline
wandb and trackio runs read back from their files, secrets never logged, tracker failures never
stop training, and turning tracking on never restarts a run. Offline, tiny model, a few steps."""
import json
import logging
import os
import signal
import struct
import sys
from pathlib import Path

import numpy
import pytest
import yaml

from doctune.io import read_json, read_jsonl
from doctune.training import train
from doctune.training import tracking as T

SECRET = "sk-test-123"
CFG = {"seq_len": 24, "batch_size": 2, "grad_accum": 1, "learning_rate": 5e-3, "log_every": 1, "save_every": 2,
       "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "bf16": False, "gradient_checkpointing": False, "seed": 0,
       "max_steps": 4, "warmup_ratio": 0.25}
DOCS = ["Hens kept on open pasture show a wide range of natural behaviours such as dust bathing.",
        "The city council approved a plan to add housing near the new tram line.",
        "Fish feel pain, and careful handling during transport reduces their stress.",
        "Dense neighbourhoods with mixed uses let residents walk to shops and schools."]

# The block proposed for config/schema.yaml (top-level `tracking:`); the tests check it against
# the real schema and the code's use of it. Every key has a default, so schema_defaults lists them.
SCHEMA_BLOCK = """
tracking:
  description: "Experiment tracking: training curves (train/loss, train/learning_rate, ...) and sweep metrics in wandb or trackio (doctune.training.tracking). Off unless backend is set, offline unless mode is online; needs requirements-tracking.txt. Not part of any run's fingerprint: turning it on or off retrains nothing."
  type: object
  default: {}
  additionalProperties: false
  properties:
    backend: {type: ["string", "null"], enum: [null, wandb, trackio], default: null, description: "wandb or trackio (null = no tracking)."}
    project: {type: ["string", "null"], default: null, description: "Project the runs go to (null = run_name). Runs are grouped by run_name and named by model (ARM, ARM.postN, sweep points ARM~KEY=VALUE)."}
    mode: {type: string, enum: [offline, online], default: offline, description: "offline: local files only (wandb: DIR/wandb/offline-run-*, upload later with `wandb sync`; trackio: its local database, browse with `trackio show`); online: wandb.ai or a trackio Space/server (the backend's own login and environment variables)."}
    dir: {type: ["string", "null"], default: null, description: "Where the tracker writes (a relative path is relative to the run folder runs/RUN_NAME/); null = the backend's default (wandb: WANDB_DIR or ./wandb in the run folder; trackio: TRACKIO_DIR or $HF_HOME/trackio)."}
"""
FULL = {"backend": "wandb", "project": None, "mode": "offline", "dir": None}   # the block's defaults, spelled out


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb offline with all of its folders under tmp_path, and a secret in the environment."""
    pytest.importorskip("wandb")
    for var, sub in (("WANDB_DIR", "wandb_dir"), ("WANDB_CONFIG_DIR", "wandb_config"),
                     ("WANDB_CACHE_DIR", "wandb_cache"), ("WANDB_DATA_DIR", "wandb_data"),
                     ("WANDB_ARTIFACT_DIR", "wandb_artifacts")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    return tmp_path


@pytest.fixture
def docs_file(tmp_path):
    p = tmp_path / "docs.jsonl"
    p.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(DOCS)))
    return str(p)


def wandb_records(run_dir: Path) -> list:
    """The records of an offline run's .wandb file (a LevelDB-style log of protobuf records:
    a 7-byte header, 32 KiB blocks, each chunk with crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = run_dir.glob("run-*.wandb")
    data, pos, buf, out = path.read_bytes(), 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        if left < 7:
            pos += left
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + n], pos + 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def wandb_run(run_dir: Path) -> dict:
    """run (project, group, name, config), history (by step) and summary of an offline run."""
    def items(xs):
        return {x.key or "/".join(x.nested_key): json.loads(x.value_json) for x in xs}
    res = {"history": {}, "summary": {}}
    for r in wandb_records(run_dir):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            res.update(project=r.run.project, group=r.run.run_group, name=r.run.display_name,
                       config={k: v for k, v in items(r.run.config.update).items() if k != "_wandb"})
        elif kind == "history":
            h = items(r.history.item)
            res["history"][h["_step"]] = h
        elif kind == "summary":
            res["summary"].update(items(r.summary.update))
    return res


def offline_runs(root: Path) -> list[Path]:
    return sorted(root.rglob("offline-run-*"))


def no_secret_in(root: Path) -> None:
    for f in root.rglob("*"):
        if f.is_file() and not f.is_symlink():
            assert SECRET.encode() not in f.read_bytes(), f


# ------------------------------------------------------------------------------------------------

def test_off_unless_set(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cfg in (None, {}, {"backend": None}, {**FULL, "backend": None}):
        t = T.open_tracker(cfg, name="a", group="g", config={"x": 1})
        assert type(t) is T.Tracker and not t.enabled
        t.log({"loss": 1.0}, step=1), t.summary({"x": 1}), t.finish()
        assert T.log_sweep_metrics(cfg, project_default="p", group="g",
                                   rows=[{"model": "m", "benchmark": "b", "metric": "m", "value": 1}]) == 0
    assert list(tmp_path.iterdir()) == []


def test_strip_secrets(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    cfg = {"api_key": "a", "apiKey": "b", "hf_token": "c", "client_secret": "d", "password": "e", "key": "f",
           "max_tokens": 100, "tokens": 5, "train_cfg": {"lr": 0.1, "nested": [{"access_token": "g", "n": 1}]},
           "note": f"url?key={SECRET}", "name": "doc"}
    assert T.strip_secrets(cfg) == {"max_tokens": 100, "tokens": 5, "train_cfg": {"lr": 0.1, "nested": [{"n": 1}]},
                                    "note": T.REDACTED, "name": "doc"}


def test_schema_block_and_defaults(tmp_path, monkeypatch, repo_root):
    """The proposed block fits config/schema.yaml (a config with `tracking:` validates) and the code
    takes its defaults from it."""
    import doctune.workflow.config as C

    schema = yaml.safe_load((repo_root / "config/schema.yaml").read_text())
    schema["properties"]["tracking"] = yaml.safe_load(SCHEMA_BLOCK)["tracking"]
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    monkeypatch.setattr(C, "SCHEMA_PATH", path)
    assert C.schema_defaults("properties", "tracking") == {**FULL, "backend": None}
    assert T.resolve_tracking({"backend": "trackio"}) == {**FULL, "backend": "trackio"}
    assert T.resolve_tracking({"backend": None, "mode": "online"}) is None
    with pytest.raises(T.TrackingError, match="tracking.projct"):
        T.resolve_tracking({"backend": "wandb", "projct": "x"})
    with pytest.raises(T.TrackingError, match="tracking.mode"):
        T.resolve_tracking({"backend": "wandb", "mode": "cloud"})
    cfg = C.load_yaml((repo_root / "config/demo.yaml").read_text())
    out = C.validate_config({**cfg, "tracking": {"backend": "wandb", "dir": "tracking"}}, schema_path=path)
    assert out["tracking"] == {**FULL, "dir": "tracking"}
    assert C.validate_config(cfg, schema_path=path)["tracking"] == {**FULL, "backend": None}
    with pytest.raises(C.ConfigError, match="tracking"):
        C.validate_config({**cfg, "tracking": {"backend": "mlflow"}}, schema_path=path)


def test_missing_package_is_a_config_error(tmp_path, monkeypatch, docs_file, tiny_spec):
    monkeypatch.setitem(sys.modules, "wandb", None)   # `import wandb` raises ImportError
    with pytest.raises(T.TrackingError, match=r"tracking\.backend.*pip install") as e:
        T.open_tracker(FULL, name="a", group="g", config={})
    assert e.value.user_error                          # one line from the rule, no traceback
    with pytest.raises(T.TrackingError, match=r"tracking\.backend"):
        train("doc", [docs_file], tiny_spec, CFG, str(tmp_path / "m"), tracking=FULL, run_group="g")
    assert not (tmp_path / "m" / "train_metrics.jsonl").exists()   # stopped before any work


def test_tracker_failures_only_warn(monkeypatch, caplog):
    def broken(*a, **k):
        raise OSError("No space left on device")
    monkeypatch.setitem(T.OPENERS, "wandb", broken)
    monkeypatch.setattr(T, "import_backend", lambda b: object())
    with caplog.at_level(logging.WARNING):
        t = T.open_tracker(FULL, name="arm", group="g", config={})
    assert type(t) is T.Tracker and "could not start a run" in caplog.text

    class Run:
        calls = 0

        def log(self, metrics, step=None):
            Run.calls += 1
            raise OSError("disk full")
    t = T._Wandb(Run(), "wandb", "arm")
    with caplog.at_level(logging.WARNING):
        t.log({"loss": 1.0}, step=1)
        t.log({"loss": 0.5}, step=2)
        t.summary({"x": 1}), t.finish()
    assert Run.calls == 1 and caplog.text.count("tracking is off for the rest of this run") == 1


def test_train_logs_every_metrics_line_to_wandb_offline(wandb_env, docs_file, tiny_spec):
    out = wandb_env / "models" / "doc"
    tracking = {**FULL, "project": "proj", "dir": str(wandb_env / "tracking")}
    res = train("doc", [docs_file], tiny_spec, CFG, str(out), name="doc", tracking=tracking, run_group="testrun")
    (run_dir,) = offline_runs(wandb_env / "tracking")
    run = wandb_run(run_dir)
    assert (run["project"], run["group"], run["name"]) == ("proj", "testrun", "doc")
    assert run["config"]["train_cfg"]["max_steps"] == 4 and run["config"]["method"] == "doc"
    rows = read_jsonl(out / "train_metrics.jsonl")
    assert sorted(run["history"]) == [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        h = run["history"][r["step"]]
        for k in ("loss", "learning_rate", "tokens", "tokens_per_s", "grad_norm", "epoch"):
            assert h[f"train/{k}"] == pytest.approx(r[k], rel=1e-12), k
    assert run["summary"]["final_loss"] == pytest.approx(res["final_loss"])
    assert run["summary"]["tokens"] == res["tokens"] and run["summary"]["global_step"] == 4
    # tracking is no part of what the run is: same fingerprint as an untracked run of the same settings
    plain = train("doc", [docs_file], tiny_spec, CFG, str(wandb_env / "models" / "plain"), name="doc")
    assert read_json(out / "trainer_state.json")["fingerprint"] == \
        read_json(wandb_env / "models" / "plain" / "trainer_state.json")["fingerprint"]
    assert plain["final_loss"] == pytest.approx(res["final_loss"])
    assert "tracking" not in json.dumps(read_json(out / "trainer_state.json"))
    no_secret_in(wandb_env)
    # a finished run with tracking on is not retrained and opens no tracker run
    again = train("doc", [docs_file], tiny_spec, CFG, str(out), name="doc", tracking=tracking, run_group="testrun")
    assert again["skipped"] and len(offline_runs(wandb_env / "tracking")) == 1


def test_tracking_turned_on_after_a_checkpoint_resumes_it(wandb_env, docs_file, tiny_spec, monkeypatch):
    """An untracked run stopped (SIGUSR1) after step 2 resumes from its checkpoint with tracking on:
    neither the run key of prepare_train_dir nor train()'s fingerprint sees the tracking settings."""
    import doctune.training.step as step
    from doctune.workflow.pipeline import prepare_train_dir

    out = wandb_env / "models" / "doc"
    kwargs = dict(method="doc", data=[docs_file], base_spec=tiny_spec, train_cfg=CFG, out_dir=str(out), name="doc")
    prepare_train_dir(str(out), {"kwargs": kwargs, "data": ["x"]})
    orig, calls = step.train_step, []

    def stop_after_two(*a, **k):
        r = orig(*a, **k)
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGUSR1)
        return r
    monkeypatch.setattr(step, "train_step", stop_after_two)
    with pytest.raises(SystemExit) as e:
        train(**kwargs)
    assert e.value.code == 143
    monkeypatch.setattr(step, "train_step", orig)
    (ck,) = (out / "checkpoints").glob("step-*")
    fp = read_json(ck / "state.json")["fingerprint"]

    tracked = {**kwargs, "tracking": {**FULL, "dir": str(wandb_env / "tracking")}, "run_group": "testrun"}
    prepare_train_dir(str(out), {"kwargs": tracked, "data": ["x"]})   # the same run: nothing removed
    assert ck.is_dir()
    res = train(**tracked)
    assert res["resumed_from"] == 2 and res["global_step"] == 4
    assert read_json(out / "trainer_state.json")["fingerprint"] == fp
    (run_dir,) = offline_runs(wandb_env / "tracking")
    run = wandb_run(run_dir)
    rows = read_jsonl(out / "train_metrics.jsonl")
    assert sorted(run["history"]) == [3, 4] and [r["step"] for r in rows] == [1, 2, 3, 4]
    assert run["history"][4]["train/loss"] == pytest.approx(rows[-1]["loss"])
    assert run["config"]["resumed_from"] == 2 and run["project"] == "testrun"   # project defaults to the run_name
    no_secret_in(wandb_env)


def test_log_sweep_metrics_wandb_offline(wandb_env):
    rows = [{"model": "doc~n_docs=2", "benchmark": "ahb", "metric": "score", "value": 0.5, "sweep": "dose",
             "key": "n_docs", "x": 2, "train_tokens": 1000},
            {"model": "doc~n_docs=2", "benchmark": "probes", "metric": "margin", "value": 0.1, "sweep": "dose",
             "key": "n_docs", "x": 2, "train_tokens": 1000},
            {"model": "doc~n_docs=4", "benchmark": "ahb", "metric": "score", "value": numpy.float32(0.75),
             "sweep": "dose", "key": "n_docs", "x": numpy.int64(4), "train_tokens": 2000}]   # as pandas gives them
    n = T.log_sweep_metrics({**FULL, "dir": str(wandb_env / "tracking")}, project_default="myrun", group="myrun",
                            rows=rows)
    assert n == 2
    runs = {r["name"]: r for r in map(wandb_run, offline_runs(wandb_env / "tracking"))}
    assert sorted(runs) == ["doc~n_docs=2", "doc~n_docs=4"]
    a = runs["doc~n_docs=2"]
    assert (a["project"], a["group"]) == ("myrun", "myrun")
    assert a["config"] == {"model": "doc~n_docs=2", "sweep": "dose", "vary": "n_docs", "x": 2}
    assert a["history"][0]["ahb/score"] == 0.5 and a["history"][0]["probes/margin"] == 0.1
    assert a["summary"]["x"] == 2 and a["summary"]["train_tokens"] == 1000 and a["summary"]["ahb/score"] == 0.5
    assert runs["doc~n_docs=4"]["summary"]["ahb/score"] == 0.75 and runs["doc~n_docs=4"]["summary"]["x"] == 4
    no_secret_in(wandb_env)


def test_trackio_local_database(tmp_path, monkeypatch):
    """The trackio adapter on the real package: its local database under tracking.dir, remote
    settings of the environment ignored offline."""
    pytest.importorskip("trackio")
    monkeypatch.setenv("TRACKIO_SPACE_ID", "someone/space")   # offline: must not be used
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    monkeypatch.delenv("TRACKIO_DIR", raising=False)   # restored after the test (open_tracker sets it)
    cfg = {**FULL, "backend": "trackio", "project": "proj", "dir": str(tmp_path / "tk")}
    t = T.open_tracker(cfg, name="doc", group="testrun", config={"lr": 0.1, "api_key": SECRET})
    assert t.enabled and os.environ["TRACKIO_SPACE_ID"] == "someone/space"
    for s in (1, 2, 3):
        t.log({"train/loss": 1.0 / s, "train/tokens": 10 * s}, step=s)
    t.summary({"final_loss": 0.25})
    t.finish()
    from trackio.sqlite_storage import SQLiteStorage

    logs = SQLiteStorage.get_logs("proj", "doc")
    assert [r["step"] for r in logs if "train/loss" in r] == [1, 2, 3]
    assert [r["train/tokens"] for r in logs if "train/tokens" in r] == [10, 20, 30]
    assert any(r.get("summary/final_loss") == 0.25 for r in logs)
    assert (tmp_path / "tk" / "proj.db").exists()
    # outside the workflow (no run_name): no group, the project is the schema's default run_name
    t = T.open_tracker({**cfg, "project": None}, name="solo", group=None, config={})
    t.log({"train/loss": 2.0}, step=1)
    t.finish()
    assert [r["train/loss"] for r in SQLiteStorage.get_logs("doctune", "solo")] == [2.0]
    no_secret_in(tmp_path)
