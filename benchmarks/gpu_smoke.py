#!/usr/bin/env python
"""Functional checks of the GPU-only code paths, on a tiny model, in about a minute.

The CPU test suite cannot reach these: bf16 autocast training, SDPA on CUDA, gradient
checkpointing and chunked cross-entropy on CUDA, checkpoint resume on CUDA (RNG states included),
and seeded sampling with the static KV cache on CUDA. Needs torch, transformers, peft, accelerate
and tokenizers; no download. Prints one PASS/FAIL line per check and exits non-zero on a failure.

    python benchmarks/gpu_smoke.py            # on a GPU machine (benchmarks/gpu_checks.sh runs it)
    python benchmarks/gpu_smoke.py --cpu      # the same checks on the CPU (float32), to test the script
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

DOCS = [f"Hens on open pasture dust-bathe and forage; farm {i} recorded calmer flocks and fewer injuries."
        for i in range(24)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (to test the script itself)")
    args = ap.parse_args(argv)

    import torch

    from doctune.io import read_json, read_jsonl
    from doctune.llm.base import GenRequest
    from doctune.llm.hf import HFBackend
    from doctune.models import base_spec, build_tiny_model
    from doctune.training import train

    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device (use --cpu to test the script)")
        return 2
    device = "cpu" if args.cpu else "cuda"
    work = Path(tempfile.mkdtemp(prefix="doctune-gpu-smoke-"))
    model_dir = build_tiny_model(work / "tiny", resources_dir=ROOT / "resources")
    spec = base_spec("tiny", {"path": str(model_dir), "dtype": "float32"})
    docs = work / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(DOCS)))
    base_cfg = {"seq_len": 64, "batch_size": 4, "grad_accum": 1, "learning_rate": 2e-2, "log_every": 1,
                "save_every": 3, "max_steps": 12, "bf16": True, "attn_implementation": "sdpa",
                "lora": {"r": 8, "alpha": 16, "dropout": 0.0}, "seed": 0}
    failures = []

    def check(name, fn):
        try:
            detail = fn()
            print(f"PASS {name}" + (f": {detail}" if detail else ""), flush=True)
        except Exception as exc:  # noqa: BLE001 - report every check
            failures.append(name)
            print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
            traceback.print_exc()

    def train_variant(tag, **over):
        out = work / tag
        res = train("doc", [str(docs)], spec, {**base_cfg, **over}, str(out))
        state = read_json(out / "trainer_state.json")
        rows = read_jsonl(out / "train_metrics.jsonl")
        losses = [r["loss"] for r in rows]
        assert all(torch.isfinite(torch.tensor(losses))), losses
        assert losses[-1] < losses[0], f"loss did not fall: {losses}"
        assert state["device"].startswith(device), state["device"]
        want = "no" if args.cpu else "bf16"
        assert state["mixed_precision"] == want, state["mixed_precision"]
        if not args.cpu:
            assert rows[-1]["mfu"] is None or rows[-1]["mfu"] > 0
        return res, f"loss {losses[0]:.3f} -> {losses[-1]:.3f}, {rows[-1]['tokens_per_s']:,.0f} tok/s"

    check("train bf16 + sdpa", lambda: train_variant("plain")[1])
    check("train bf16 + gradient checkpointing + chunked CE + fused AdamW",
          lambda: train_variant("gc", gradient_checkpointing=True, loss_chunking=True, loss_chunk_size=16,
                                fused_adamw=not args.cpu)[1])
    check("train bf16 + torch.compile", lambda: train_variant("compile", compile=True, max_steps=6)[1])

    def resume():
        """Stop after 5 steps (as preemption would, via max_steps of the first run being cut), then
        resume: compare with an uninterrupted run."""
        from safetensors.torch import load_file

        from doctune.training import step as step_mod

        ref = work / "ref"
        train("doc", [str(docs)], spec, {**base_cfg, "lora": {"r": 8, "alpha": 16, "dropout": 0.1}}, str(ref))
        run = work / "run"
        real = step_mod.train_step
        calls = {"n": 0}

        def stopping(*a, **k):
            calls["n"] += 1
            if calls["n"] == 6:
                import os
                import signal
                os.kill(os.getpid(), signal.SIGTERM)  # handled by train(): checkpoint after this step
            return real(*a, **k)

        step_mod.train_step = stopping
        try:
            train("doc", [str(docs)], spec, {**base_cfg, "lora": {"r": 8, "alpha": 16, "dropout": 0.1}}, str(run))
            raise AssertionError("the SIGTERM did not stop training")
        except SystemExit as exc:
            assert exc.code == 143, exc.code
        finally:
            step_mod.train_step = real
        res = train("doc", [str(docs)], spec, {**base_cfg, "lora": {"r": 8, "alpha": 16, "dropout": 0.1}}, str(run))
        a = load_file(str(ref / "adapter_model.safetensors"))
        b = load_file(str(run / "adapter_model.safetensors"))
        worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        assert worst < 1e-4, f"resumed weights differ by {worst}"
        return f"resumed from step {res['resumed_from']}, max weight difference {worst:.2e}"

    check("SIGTERM, then resume to the same weights (dropout on: RNG state restored)", resume)

    def sampling():
        be = HFBackend({"backend": "hf", "spec": spec, "batch_size": 8, "device": device,
                        "cache_implementation": "static", "compile": False})
        reqs = [GenRequest(key=f"r{i}", messages=[{"role": "user", "content": "hens " * (1 + i)}],
                           max_new_tokens=12, temperature=1.0, top_p=0.9, seed=7 + i) for i in range(6)]
        together = [r.text for r in be.generate(reqs)]
        alone = [be.generate([r])[0].text for r in reqs]
        same = sum(a == b for a, b in zip(together, alone))
        assert same == len(reqs), f"only {same} of {len(reqs)} completions independent of the batch"
        auto = HFBackend({"backend": "hf", "spec": spec, "batch_size": "auto", "device": device})
        n = auto.max_batch(16, 12)
        return f"seeded sampling independent of the batch (static cache); batch_size auto plans {n} rows"

    check("generate on the device: seeded sampling, static cache, auto batch", sampling)
    print(f"{len(failures)} failed" if failures else "all checks passed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
