"""The GPU benchmark scripts run in their CPU smoke modes (so they do not rot between GPU sessions),
and record_gpu_results.py turns their output into a record with exactly their numbers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # minutes: make test runs it, make test-fast leaves it out

REPO = Path(__file__).resolve().parents[1]


def _run(args, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TMPDIR": str(tmp_path)}
    p = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """benchmarks/gpu_checks.sh, the one script a lent GPU machine runs, in its CPU mode (tiny
    models): every step runs and leaves its file; then a fake smoke log to check the record's parsing."""
    d = tmp_path_factory.mktemp("gpu_results")
    env = {**os.environ, "GPU_CHECKS_CPU": "1", "OUT": str(d), "TMPDIR": str(d),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    p = subprocess.run(["bash", str(REPO / "benchmarks/gpu_checks.sh")], env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    for f in ("gpu.txt", "smoke.log", "sampler.log", "loss.log", "train.json", "generation.json"):
        assert (d / f).is_file(), f
    smoke = (d / "smoke.log").read_text()
    assert "all checks passed" in smoke and "FAIL" not in smoke, smoke[-3000:]
    (d / "gpu.txt").write_text("name, memory.total [MiB], driver_version\nNVIDIA H100 80GB HBM3, 81559 MiB, 550.54\n")
    (d / "smoke.log").write_text("noise\nPASS train bf16 + sdpa: loss 7.2 -> 6.4\nFAIL generate: boom\n")
    return d


def test_benchmarks_write_their_tables(results):
    train = json.loads((results / "train.json").read_text())
    assert [r["variant"] for r in train][:4] == ["nogc+chunked+fused", "nogc+chunked+fused+compile", "nogc", "gc"]
    done = [r for r in train if r["status"] == "ok"]
    assert len(done) >= 4 and all(r["status"] in ("ok", "skipped (budget)") for r in train)
    assert all(r["tokens_per_s"] > 0 and r["gradient_checkpointing"] == r["variant"].startswith("gc") for r in done)
    gen = json.loads((results / "generation.json").read_text())["rows"]
    assert [r["variant"] for r in gen] == ["bauto-static", "bauto-dynamic", "b4-static"]
    assert gen[0]["batches"] == [12] and gen[2]["batches"] == [4, 4, 4]  # auto = 16 rows on a CPU; even cuts
    assert all(r["new_tokens"] == 12 * 16 for r in gen)


def test_record_carries_the_measured_numbers(results, tmp_path):
    out = _run([str(REPO / "benchmarks/record_gpu_results.py"), str(results), "--date", "2026-11-27",
                "--out", str(tmp_path / "docs")], tmp_path).strip()
    assert Path(out).name == "gpu-2026-11-27-nvidia-h100-80gb-hbm3.md"
    text = Path(out).read_text()
    assert text.startswith("# GPU measurements, 2026-11-27, NVIDIA H100 80GB HBM3")
    train = json.loads((results / "train.json").read_text())
    best = max(train, key=lambda r: r["tokens_per_s"])
    line = next(ln for ln in text.splitlines() if ln.startswith("Best:") and "tokens/s**" in ln and "new" not in ln)
    assert line.startswith(f"Best: **{best['variant']}, {best['tokens_per_s']:,.0f} tokens/s**")
    assert "not comparable with the goal of 12,500" in line  # a tiny CPU run never "meets" the H100 goal
    assert "meets" not in text
    assert text.count("Device reported by the benchmark: cpu.") == 2  # the JSON's device, not gpu.txt's
    gen = json.loads((results / "generation.json").read_text())["rows"]
    for r in gen:
        assert f"| {r['variant']} |" in text and f"{r['new_tok_per_s']:,.0f}" in text
    assert "| 16 |" in text and "speed-up" in text  # the sampler table
    assert "| chunked, fused (frozen head) |" in text and "device cpu, 256 tokens" in text  # the loss table
    assert "- PASS train bf16 + sdpa" in text and "- FAIL generate: boom" in text and "noise" not in text


def test_goal_is_judged_only_in_its_own_setting(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import record_gpu_results as rec
    finally:
        sys.path.pop(0)
    row = {"variant": "v", "status": "ok", "device": "NVIDIA H100 80GB HBM3", "seq_len": 4096,
           "model": "llama-3.1-8b-shape (32 layers)", "measured_matmul_tflops": 790.0}
    for tps, verdict in ((13_000, "which meets the goal"), (9_000, "which does not meet the goal")):
        (tmp_path / "train.json").write_text(json.dumps([{**row, "tokens_per_s": tps}]))
        assert verdict in "\n".join(rec.train_section(tmp_path))
    (tmp_path / "train.json").write_text(json.dumps([{**row, "tokens_per_s": 13_000, "layers": 4,
                                                      "model": "llama-3.1-8b-shape (4 layers)"}]))
    assert "not comparable" in "\n".join(rec.train_section(tmp_path))  # a cut-down model proves nothing
    gen = {"variant": "bauto-static", "completions": 780, "new_tokens": 780 * 512, "seconds": 70.0}
    for tps, verdict in ((5_700, "which meets"), (4_000, "which does not meet")):
        (tmp_path / "generation.json").write_text(json.dumps({"device": "NVIDIA H100", "rows": [
            {**gen, "new_tok_per_s": tps}]}))
        assert verdict in "\n".join(rec.generation_section(tmp_path))
    (tmp_path / "generation.json").write_text(json.dumps({"device": "NVIDIA H100", "rows": [
        {**gen, "completions": 130, "new_tokens": 130 * 512, "new_tok_per_s": 9_000}]}))
    assert "not comparable" in "\n".join(rec.generation_section(tmp_path))  # part of the workload only
