"""The GPU benchmark scripts run in their CPU smoke modes (so they do not rot between GPU sessions),
and record_gpu_results.py turns their output into a record with exactly their numbers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
    p = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu_results")
    (d / "gpu.txt").write_text("name, memory.total [MiB], driver_version\nNVIDIA H100 80GB HBM3, 81559 MiB, 550.54\n")
    _run([str(REPO / "benchmarks/train_throughput.py"), "--tiny", "--all", "--variants", "nogc,gc",
          "--budget", "300", "--json", str(d / "train.json")], d)
    _run([str(REPO / "benchmarks/generation_throughput.py"), "--tiny", "--variants", "bauto-static,b4-dynamic",
          "--json", str(d / "generation.json")], d)
    (d / "sampler.log").write_text(_run([str(REPO / "benchmarks/sampler_throughput.py"), "--rows", "4",
                                         "--vocab", "1000", "--reps", "2"], d))
    (d / "loss.log").write_text(_run([str(REPO / "benchmarks/loss_throughput.py"), "--tokens", "64", "--hidden", "16",
                                      "--vocab", "300", "--chunk", "16", "--reps", "1"], d))
    (d / "smoke.log").write_text("noise\nPASS train bf16 + sdpa: loss 7.2 -> 6.4\nFAIL generate: boom\n")
    return d


def test_benchmarks_write_their_tables(results):
    train = json.loads((results / "train.json").read_text())
    assert [r["variant"] for r in train] == ["nogc", "gc"] and all(r["status"] == "ok" for r in train)
    assert all(r["tokens_per_s"] > 0 and r["gradient_checkpointing"] == (r["variant"] == "gc") for r in train)
    gen = json.loads((results / "generation.json").read_text())["rows"]
    assert [r["variant"] for r in gen] == ["bauto-static", "b4-dynamic"]
    assert gen[0]["batches"] == [12] and gen[1]["batches"] == [4, 4, 4]  # auto = 16 rows on a CPU; even cuts
    assert all(r["new_tokens"] == 12 * 16 for r in gen)


def test_record_carries_the_measured_numbers(results, tmp_path):
    out = _run([str(REPO / "benchmarks/record_gpu_results.py"), str(results), "--date", "2026-11-27",
                "--out", str(tmp_path / "docs")], tmp_path).strip()
    assert Path(out).name == "gpu-2026-11-27-nvidia-h100-80gb-hbm3.md"
    text = Path(out).read_text()
    assert text.startswith("# GPU measurements, 2026-11-27, NVIDIA H100 80GB HBM3")
    train = json.loads((results / "train.json").read_text())
    best = max(train, key=lambda r: r["tokens_per_s"])
    verb = "meets" if best["tokens_per_s"] >= 12_500 else "does not meet"
    line = next(ln for ln in text.splitlines() if ln.startswith("Best:") and "tokens/s**" in ln and "new" not in ln)
    assert line.startswith(f"Best: **{best['variant']}, {best['tokens_per_s']:,.0f} tokens/s**")
    assert f"which {verb} the goal of 12,500." in line
    assert text.count("Device reported by the benchmark: cpu.") == 2  # the JSON's device, not gpu.txt's
    gen = json.loads((results / "generation.json").read_text())["rows"]
    for r in gen:
        assert f"| {r['variant']} |" in text and f"{r['new_tok_per_s']:,.0f}" in text
    assert "| 4 |" in text and "speed-up" in text  # the sampler table
    assert "| chunked, fused (frozen head) |" in text and "device cpu, 64 tokens" in text  # the loss table
    assert "- PASS train bf16 + sdpa" in text and "- FAIL generate: boom" in text and "noise" not in text
