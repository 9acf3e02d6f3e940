#!/usr/bin/env python
"""Training throughput of doctune's own training step on a Llama-3.1-8B-shaped model.

Random weights (LlamaConfig of the 8B shape, vocab 128256) built directly on the GPU in bf16, LoRA
r=16 on all projections, sequences of 4096 tokens, through doctune.training.step.train_step (the
step function train() uses). Needs only torch, transformers, peft and accelerate; no download.

    python benchmarks/train_throughput.py                      # one variant (flags below)
    python benchmarks/train_throughput.py --all                # every variant, one subprocess each, table
    python benchmarks/train_throughput.py --tiny --all         # CPU smoke test with a tiny model

Prints tokens/s and MFU against a bf16 matmul peak measured on the same device (and against the
data-sheet peak when the GPU is known). MFU counts model FLOPs (4N per token for LoRA, 6N for full
fine-tuning, plus causal attention), never the recomputation of gradient checkpointing.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

VARIANTS = {
    # name: flags. Ordered by how likely they are to be the fastest, so a time budget keeps those.
    "nogc+chunked+fused": ["--loss-chunking", "--fused-adamw"],
    "nogc+chunked+fused+compile": ["--loss-chunking", "--fused-adamw", "--compile"],
    "nogc": [],
    "gc": ["--gradient-checkpointing"],
    "nogc+chunked+fused+packing": ["--loss-chunking", "--fused-adamw", "--packing"],
    "nogc+chunked": ["--loss-chunking"],
    "gc+chunked+bs2": ["--gradient-checkpointing", "--loss-chunking", "--batch-size", "2"],
    "gc+chunked": ["--gradient-checkpointing", "--loss-chunking"],
    "gc+chunked+fused+packing": ["--gradient-checkpointing", "--loss-chunking", "--fused-adamw", "--packing"],
}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="run every variant in its own subprocess and print a table")
    p.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test)")
    p.add_argument("--seq-len", type=int, default=None, help="default 4096 (128 with --tiny)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps (default 8, 2 with --tiny)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3, 1 with --tiny)")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--loss-chunking", action="store_true", help="chunked cross-entropy over the vocabulary")
    p.add_argument("--loss-chunk-size", type=int, default=1024)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--fused-adamw", action="store_true")
    p.add_argument("--packing", action="store_true", help="pack random-length documents (position-id resets)")
    p.add_argument("--attn", default="sdpa", help="sdpa, flash_attention_2 or eager")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--layers", type=int, default=None, help="override the layer count (default 32)")
    p.add_argument("--json", default=None, help="write the result as JSON to this file")
    p.add_argument("--timeout", type=int, default=900, help="--all: seconds per variant")
    p.add_argument("--variants", default=None, help="--all: comma list of variant names (default: all, in order)")
    p.add_argument("--budget", type=float, default=None,
                   help="--all: seconds for all variants; later ones are skipped once it is spent")
    return p.parse_args(argv)


def measure_matmul_peak(device: str, dtype) -> float:
    """Dense matmul TFLOP/s on this device (best of a few timed runs)."""
    import torch

    n = 8192 if device == "cuda" else 512
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    reps = 30 if device == "cuda" else 5
    best = 0.0
    for _ in range(3):
        for _ in range(2):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12)
    del a, b
    return best


def build_model(args, device: str, dtype):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    if args.tiny:
        cfg = LlamaConfig(vocab_size=2000, hidden_size=64, intermediate_size=128, num_hidden_layers=args.layers or 2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                          tie_word_embeddings=False)
    else:  # the Llama-3.1-8B shape
        cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                          num_hidden_layers=args.layers or 32, num_attention_heads=32, num_key_value_heads=8,
                          max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                          tie_word_embeddings=False, bos_token_id=128000, eos_token_id=128001)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation=args.attn, dtype=dtype)
    finally:
        torch.set_default_dtype(prev)
    return model


def make_rows(args, vocab: int, n_rows: int):
    import random

    from doctune.training.data import pack_documents

    rng = random.Random(0)
    if args.packing:
        docs, total = [], 0
        while total < n_rows * args.seq_len:
            n = rng.randint(max(2, args.seq_len // 16), max(3, args.seq_len // 2))
            docs.append([1] + [rng.randrange(3, vocab) for _ in range(n - 2)] + [2])
            total += n
        return pack_documents(docs, args.seq_len)[:n_rows]
    rows = []
    for _ in range(n_rows):
        ids = [rng.randrange(3, vocab) for _ in range(args.seq_len)]
        rows.append({"input_ids": ids, "labels": [-100] + ids[1:], "position_ids": list(range(args.seq_len))})
    return rows


def run_one(args) -> dict:
    import torch
    from accelerate import Accelerator

    from doctune.training.config import resolve_train_cfg
    from doctune.training.data import collate
    from doctune.training.step import (LossModule, apply_lora, enable_gradient_checkpointing, flops_per_token,
                                       make_optimizer, make_scheduler, peak_tflops, train_step)

    cuda = torch.cuda.is_available() and not args.tiny
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    args.seq_len = args.seq_len or (128 if args.tiny else 4096)
    steps = args.steps or (2 if args.tiny else 8)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    cfg = resolve_train_cfg({
        "seq_len": args.seq_len, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
        "learning_rate": 1e-4, "lr_scheduler": "constant", "bf16": cuda,
        "gradient_checkpointing": args.gradient_checkpointing, "attn_implementation": args.attn,
        "fused_adamw": args.fused_adamw, "compile": args.compile, "loss_chunking": args.loss_chunking,
        "loss_chunk_size": args.loss_chunk_size, "lora": {"r": args.lora_r, "alpha": 2 * args.lora_r, "dropout": 0.0},
    })
    measured_peak = measure_matmul_peak(device, dtype)
    accelerator = Accelerator(mixed_precision="bf16" if cuda else "no", cpu=not cuda)
    t_build = time.perf_counter()
    model = build_model(args, device, dtype)
    model = apply_lora(model, cfg["lora"])
    if cfg["gradient_checkpointing"]:
        enable_gradient_checkpointing(model)
    model.train()
    build_s = time.perf_counter() - t_build
    fpt = flops_per_token(model, args.seq_len, lora=True)
    loss_module = LossModule(model, chunked=cfg["loss_chunking"], chunk_size=cfg["loss_chunk_size"],
                             flatten=args.attn.startswith("flash"))
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, warmup + steps)
    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
    if cfg["compile"]:
        loss_module = torch.compile(loss_module)
    params = [p for p in model.parameters() if p.requires_grad]
    per_step = args.batch_size * args.grad_accum
    rows = make_rows(args, model.config.vocab_size if hasattr(model, "config") else 128256, per_step)
    micro = []
    for m in range(args.grad_accum):
        b = collate(rows[m * args.batch_size:(m + 1) * args.batch_size], 0, args.seq_len)
        b["weight"] = 1
        micro.append(b)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    losses = []
    t_first = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            tokens = 0
        res = train_step(accelerator, loss_module, optimizer, scheduler, micro, cfg["max_grad_norm"], params)
        losses.append(res["loss"])
        if i >= warmup:
            tokens += res["tokens"]
        if i == 0:
            first_step_s = time.perf_counter() - t_first
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tps = tokens / dt
    sheet = peak_tflops(None)
    out = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "model": "tiny" if args.tiny else f"llama-3.1-8b-shape ({args.layers or 32} layers)",
        "seq_len": args.seq_len, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
        "gradient_checkpointing": args.gradient_checkpointing, "loss_chunking": args.loss_chunking,
        "compile": args.compile, "fused_adamw": args.fused_adamw, "packing": args.packing, "attn": args.attn,
        "lora_r": args.lora_r, "timed_steps": steps, "tokens_per_s": tps,
        "flops_per_token": fpt, "measured_matmul_tflops": measured_peak,
        "mfu_vs_measured_peak": tps * fpt / (measured_peak * 1e12),
        "datasheet_tflops": sheet, "mfu_vs_datasheet": (tps * fpt / (sheet * 1e12)) if sheet else None,
        "peak_mem_gib": torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else None,
        "build_s": build_s, "first_step_s": first_step_s, "losses": losses,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "peft": __import__("peft").__version__, "accelerate": __import__("accelerate").__version__},
    }
    return out


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def _run_variant(name: str, passthrough: list[str], tmpdir: Path, timeout: float) -> tuple[str, dict]:
    """One variant in its own process (a fresh CUDA context each): (status, result dict)."""
    out = tmpdir / f"train_throughput_{os.getpid()}_{name.replace('+', '_')}.json"
    cmd = [sys.executable, __file__, *passthrough, *VARIANTS[name], "--json", str(out)]
    print(f"# {name}: {' '.join(cmd[2:])}", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", {}
    if proc.returncode == 0 and out.exists():
        return "ok", json.loads(out.read_text())
    print(proc.stderr[-3000:], file=sys.stderr)
    return ("OOM" if "out of memory" in (proc.stderr or "").lower() else f"failed rc={proc.returncode}"), {}


def run_all(args) -> int:
    results = []
    passthrough = []
    if args.tiny:
        passthrough.append("--tiny")
    for flag, val in (("--seq-len", args.seq_len), ("--steps", args.steps), ("--warmup", args.warmup),
                      ("--layers", args.layers), ("--attn", args.attn)):
        if val is not None:
            passthrough += [flag, str(val)]
    tmpdir = Path(os.environ.get("TMPDIR", "/tmp"))
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    t_start = time.perf_counter()

    def table():
        lines = ["| variant | status | tokens/s | MFU (measured peak) | MFU (data sheet) | peak GiB |",
                 "| --- | --- | ---: | ---: | ---: | ---: |"]
        for name, status, r in results:
            lines.append(f"| {name} | {status} | {fmt(r.get('tokens_per_s'), ',.0f')} "
                         f"| {fmt(r.get('mfu_vs_measured_peak'), '.1%')} | {fmt(r.get('mfu_vs_datasheet'), '.1%')} "
                         f"| {fmt(r.get('peak_mem_gib'), '.1f')} |")
        return "\n".join(lines)

    for name in names:
        left = None if args.budget is None else args.budget - (time.perf_counter() - t_start)
        if left is not None and left < 20:
            status, res = "skipped (budget)", {}
        else:
            status, res = _run_variant(name, passthrough, tmpdir, args.timeout if left is None else min(args.timeout, left))
        results.append((name, status, res))
        # each variant is printed and saved at once: a killed run keeps what it measured
        print(json.dumps({"variant": name, "status": status, **{k: res[k] for k in ("tokens_per_s", "mfu_vs_measured_peak", "peak_mem_gib") if k in res}}), flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps([{"variant": n, "status": s, **r} for n, s, r in results], indent=1))
    print("\n" + table())
    first = next((r for _, _, r in results if r), None)
    if first:
        print(f"\ndevice: {first['device']}; measured matmul peak ({'bf16' if first['device'] != 'cpu' else 'fp32'}) "
              f"{first['measured_matmul_tflops']:.3g} TFLOP/s; "
              f"seq_len {first['seq_len']}; versions {first['versions']}")
    return 0 if all(s in ("ok", "skipped (budget)") for _, s, _ in results) else 1


def main(argv=None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse(argv)
    if args.all:
        return run_all(args)
    res = run_one(args)
    print(f"{res['model']} on {res['device']}: {res['tokens_per_s']:,.0f} tokens/s, "
          f"MFU {res['mfu_vs_measured_peak']:.1%} of measured {res['measured_matmul_tflops']:.3g} TFLOP/s"
          + (f", {res['mfu_vs_datasheet']:.1%} of data sheet" if res["mfu_vs_datasheet"] else "")
          + (f", peak memory {res['peak_mem_gib']:.1f} GiB" if res["peak_mem_gib"] else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    gc.collect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
