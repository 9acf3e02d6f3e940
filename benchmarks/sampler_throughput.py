#!/usr/bin/env python
"""Per-step cost of doctune's seeded sampler (inverse-CDF, one random number per row) against the
Gumbel-max form it replaced (a hashed random number per row and token), on (rows x 128256) logits.

    python benchmarks/sampler_throughput.py [--rows 64,256] [--device cuda] [--top-p 1.0]

Prints milliseconds per decoding step for each and the ratio. Both are exact samplers with
per-request seeds; the difference is how many passes over the rows x vocabulary tensor a step makes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from doctune.llm.hf import _MASK32, SeededSampler, _mix32  # noqa: E402


class GumbelSampler(SeededSampler):
    """The earlier form, for comparison: Gumbel noise from a hash of (seed, step, token id)."""

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
            p_sorted = torch.softmax(sorted_logits, dim=-1)
            drop_sorted = (p_sorted.cumsum(dim=-1) - p_sorted) >= self.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        vocab, device = logits.shape[-1], logits.device
        vh = getattr(self, "_vh", None)
        if vh is None or vh.shape[0] != vocab or vh.device != device:  # cached, as the old code did
            vh = self._vh = _mix32(torch.arange(vocab, dtype=torch.int64, device=device) + 0x632BE5AB)
        rh = _mix32(torch.tensor(self.seeds, dtype=torch.int64, device=device))
        sw = _mix32(torch.tensor((step * 0x85EBCA77 + 0x27D4EB2F) & _MASK32, dtype=torch.int64, device=device))
        words = _mix32(_mix32(rh ^ sw)[:, None] ^ vh[None, :])
        u = ((words >> 9).to(torch.float32) + 0.5) * (1.0 / float(1 << 23))
        choice = torch.argmax(logits - torch.log(-torch.log(u)), dim=-1)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, choice[:, None], 0.0)
        return out


def time_step(sampler, scores, reps: int) -> float:
    ids = torch.zeros((scores.shape[0], 8), dtype=torch.long, device=scores.device)
    sampler(ids, scores)
    if scores.is_cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        sampler(ids, scores)
    if scores.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="64,256")
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args(argv)
    reps = args.reps or (50 if args.device == "cuda" else 5)
    print(f"device {args.device}, vocab {args.vocab}, top_p {args.top_p}, {reps} steps each")
    print("| rows | inverse-CDF ms/step | Gumbel-max ms/step | speed-up |")
    print("| ---: | ---: | ---: | ---: |")
    for rows in [int(x) for x in args.rows.split(",")]:
        torch.manual_seed(0)
        scores = torch.randn(rows, args.vocab, device=args.device)
        seeds = list(range(rows))
        new = time_step(SeededSampler(seeds, 0, 1.0, args.top_p), scores, reps)
        old = time_step(GumbelSampler(seeds, 0, 1.0, args.top_p), scores, reps)
        print(f"| {rows} | {new:.2f} | {old:.2f} | {old / new:.1f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
