#!/usr/bin/env python
"""Generation throughput of doctune's own HFBackend on the paper's AHB workload for one model.

Workload: 26 questions x 30 epochs = 780 completions, 256-token prompts, 512 new tokens each
(EOS ignored, so every completion is exactly 512 tokens and new tokens/s is comparable across
variants), sampled at temperature 1.0 with per-request seeds (doctune.llm.hf.SeededSampler).

Model: a Llama-3.1-8B-shaped LlamaForCausalLM with random weights, built on the GPU in bf16 (no
download). Prompts are random token ids fed straight to the backend (a stand-in tokenizer decodes
ids to numbers), so the timed path is HFBackend.generate: grouping, length sorting, batching,
left padding, seeded sampling, transformers' generate.

Variants: batch sizes (auto = the backend's memory plan, 64, 128, 256, 780) x cache (static
without compile, static + torch.compile, dynamic), and vLLM when it is importable. The backend cuts
the 780 requests into equal batches of at most the batch size (the table shows the cut). Each
variant first runs one warm-up batch of the first batch's shape (compilation and CUDA-graph
capture happen there), then the whole workload is timed. Batches that do not fit are halved by the
backend's out-of-memory fallback. --budget skips the variants not started once it is spent.

Needs only torch + transformers (+ vllm, optional); doctune is imported from ../src.

    python benchmarks/generation_throughput.py                    # GPU, full workload
    python benchmarks/generation_throughput.py --variants bauto-static,bauto-static-compile,b64-dynamic
    python benchmarks/generation_throughput.py --tiny             # CPU smoke test (tiny model)
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from doctune.llm.base import GenRequest  # noqa: E402
from doctune.llm.hf import HFBackend, balanced_batches  # noqa: E402

LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)
TINY = dict(vocab_size=2000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
            tie_word_embeddings=False)


class IdTokenizer:
    """Stand-in tokenizer: the prompts are token ids already; decode writes ids as numbers."""

    def __init__(self, vocab: int):
        self.pad_token_id = 0
        self.eos_token_id = 1
        self.bos_token_id = 2
        self.eos_token = "</s>"
        self.pad_token = "<pad>"
        self.chat_template = "ids"
        self.vocab = vocab

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids)


class IdBackend(HFBackend):
    """HFBackend whose prompts are given as token ids (request key -> ids)."""

    prompts: dict[str, list[int]] = {}

    def prompt_ids(self, req):
        return self.prompts[req.key]


def build_model(shape: dict, device: str, dtype):
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**shape, bos_token_id=2, eos_token_id=1, pad_token_id=0)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(cfg)
    finally:
        torch.set_default_dtype(prev)
    model.generation_config = GenerationConfig(bos_token_id=2, eos_token_id=1, pad_token_id=0)
    return model.eval()


def workload(n_questions: int, epochs: int, prompt_len: int, vocab: int, max_new: int):
    g = torch.Generator().manual_seed(1)
    prompts, reqs = {}, []
    for q in range(n_questions):
        ids = [2] + torch.randint(10, vocab, (prompt_len - 1,), generator=g).tolist()
        for e in range(epochs):
            key = f"q{q}-e{e}"
            prompts[key] = ids
            reqs.append(GenRequest(key=key, messages=[{"role": "user", "content": key}], max_new_tokens=max_new,
                                   temperature=1.0, top_p=1.0, seed=q * 1000 + e))
    return prompts, reqs


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_hf(model, tok, reqs, batch_size, cache: str, compile_: bool):
    cfg = {"backend": "hf", "spec": {"name": "llama-8b-random"}, "batch_size": batch_size, "ignore_eos": True,
           "cache_implementation": "static" if cache == "static" else None, "compile": compile_}
    b = IdBackend(cfg, model=model, tokenizer=tok)
    # the warm-up batch has the shape of the first timed batch (the backend cuts batches evenly)
    plan = balanced_batches(list(range(len(reqs))),
                            b.max_batch(max(len(IdBackend.prompts[r.key]) for r in reqs), reqs[0].max_new_tokens))
    print(f"  batches: {[len(x) for x in plan]}", flush=True)
    warm = reqs[:len(plan[0])]
    t0 = time.perf_counter()
    b.generate(warm)
    sync()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = b.generate(reqs)
    sync()
    secs = time.perf_counter() - t0
    return res, secs, warm_s, [len(x) for x in plan]


def run_vllm(model_dir: str, reqs, prompts, max_new: int):  # pragma: no cover - needs vllm + GPU
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    llm = LLM(model=model_dir, dtype="bfloat16", seed=0, skip_tokenizer_init=True)
    ps = [TokensPrompt(prompt_token_ids=prompts[r.key]) for r in reqs]
    sp = [SamplingParams(max_tokens=max_new, temperature=1.0, top_p=1.0, seed=r.seed, ignore_eos=True,
                         detokenize=False) for r in reqs]
    t0 = time.perf_counter()
    llm.generate(ps[:64], sp[:64], use_tqdm=False)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = llm.generate(ps, sp, use_tqdm=False)
    secs = time.perf_counter() - t0
    return sum(len(o.outputs[0].token_ids) for o in outs), secs, warm_s


def run_variant(v: str, model, tok, reqs, prompts, max_new: int) -> dict:
    """Time one variant (vllm, or bBATCH-CACHE[-compile]); errors become the row's `error`."""
    try:
        if v == "vllm":
            import tempfile

            with tempfile.TemporaryDirectory() as d:
                model.save_pretrained(d)
                new_tokens, secs, warm_s = run_vllm(d, reqs, prompts, max_new)
            plan = None
        else:
            bs_s, cache = v.split("-", 1)
            bs = "auto" if bs_s[1:] == "auto" else int(bs_s[1:])
            res, secs, warm_s, plan = run_hf(model, tok, reqs, bs, cache.split("-")[0], cache.endswith("compile"))
            new_tokens = sum(r.output_tokens for r in res)
    except Exception as exc:  # noqa: BLE001 - report and go on with the next variant
        return {"variant": v, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    row = {"variant": v, "completions": len(reqs), "new_tokens": new_tokens, "seconds": round(secs, 2),
           "warmup_seconds": round(warm_s, 2), "new_tok_per_s": round(new_tokens / secs, 1)}
    if plan is not None:
        row["batches"] = plan
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny model, small workload")
    ap.add_argument("--questions", type=int, default=26)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--prompt-len", type=int, default=256)
    ap.add_argument("--max-new", type=int, default=512)
    ap.add_argument("--batch-sizes", default="auto,64,128,256,780",
                    help="comma list of rows per generate call; auto = the backend's memory plan")
    ap.add_argument("--caches", default="static,static-compile,dynamic")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all variants; variants not started once it is spent are skipped")
    ap.add_argument("--variants", default=None, help="comma list like b64-dynamic,b256-static-compile,vllm")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    args = ap.parse_args(argv)

    if args.tiny:
        device, dtype, shape = "cpu", torch.float32, TINY
        if args.questions == 26 and args.epochs == 30:
            args.questions, args.epochs = 4, 3
        if args.prompt_len == 256:
            args.prompt_len = 32
        if args.max_new == 512:
            args.max_new = 16
        if args.batch_sizes == "auto,64,128,256,780":
            args.batch_sizes = "auto,4,12"
        if args.caches == "static,static-compile,dynamic":
            args.caches = "static,dynamic"
    else:
        if not torch.cuda.is_available():
            sys.exit("no CUDA device: run with --tiny for the CPU smoke test")
        device, dtype, shape = "cuda", torch.bfloat16, LLAMA_8B
    variants = []
    for bs in args.batch_sizes.split(","):
        for c in args.caches.split(","):
            variants.append(f"b{bs}-{c}")
    if not args.tiny:
        try:
            import vllm  # noqa: F401

            variants.append("vllm")
        except ImportError:
            pass
    if args.variants:
        variants = args.variants.split(",")

    device_name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    print(f"device={device} torch={torch.__version__} "
          f"gpu={torch.cuda.get_device_name(0) if device == 'cuda' else '-'}", flush=True)
    t0 = time.perf_counter()
    model = build_model(shape, device, dtype)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B params, built in "
          f"{time.perf_counter() - t0:.1f}s", flush=True)
    tok = IdTokenizer(shape["vocab_size"])
    prompts, reqs = workload(args.questions, args.epochs, args.prompt_len, shape["vocab_size"], args.max_new)
    IdBackend.prompts = prompts
    print(f"workload: {len(reqs)} completions x {args.max_new} new tokens, prompts {args.prompt_len} tokens",
          flush=True)

    rows = []
    t_start = time.perf_counter()
    for v in variants:
        if args.budget is not None and time.perf_counter() - t_start > args.budget:
            row = {"variant": v, "error": "skipped: time budget spent"}
        else:
            row = run_variant(v, model, tok, reqs, prompts, args.max_new)
            if device == "cuda":
                row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 1)
                torch.cuda.reset_peak_memory_stats()
                gc.collect()
                torch.cuda.empty_cache()
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:  # after every variant: a run killed by a timeout keeps what it measured
            Path(args.json).write_text(json.dumps({"device": device_name, "rows": rows}, indent=2))

    print("\n| variant | batches | new tokens | seconds | new tokens/s | warm-up s | peak GiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | error: {r['error']} | | | | | |")
        else:
            b = r.get("batches")
            shown = "paged" if b is None else (f"{len(b)} x {b[0]}" if len(set(b)) == 1 else "+".join(map(str, b)))
            print(f"| {r['variant']} | {shown} | {r['new_tokens']} | {r['seconds']} | {r['new_tok_per_s']} | "
                  f"{r['warmup_seconds']} | {r.get('peak_gib', '')} |")
    return rows


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
