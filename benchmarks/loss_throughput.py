#!/usr/bin/env python
"""Forward + backward time of the chunked cross-entropy over a large vocabulary: the fused path for
a frozen output layer (gradient computed in the forward pass) against the checkpointed path it
replaced for LoRA runs (logits recomputed in the backward pass), and the plain loss.

    python benchmarks/loss_throughput.py                       # CPU-sized default
    python benchmarks/loss_throughput.py --device cuda --tokens 4096 --hidden 4096 --vocab 128256

Prints milliseconds per forward + backward and the ratios.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

from doctune.training.step import _ce_sum, chunked_cross_entropy, plain_cross_entropy  # noqa: E402


def checkpointed(h, head, t, chunk):
    """The form used before for every head: each chunk under activation checkpointing."""
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk):
        total = total + checkpoint(_ce_sum, head, h[s:s + chunk], t[s:s + chunk], use_reentrant=False)
    return total


def timed(fn, h, reps, cuda):
    for _ in range(2):
        h.grad = None
        fn().backward()
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        h.grad = None
        fn().backward()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / reps * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    dtype = torch.bfloat16 if cuda else torch.float32
    torch.manual_seed(0)
    head = torch.nn.Linear(args.hidden, args.vocab, bias=False, device=args.device, dtype=dtype).requires_grad_(False)
    h = torch.randn(args.tokens, args.hidden, device=args.device, dtype=dtype, requires_grad=True)
    t = torch.randint(0, args.vocab, (args.tokens,), device=args.device)
    fused = timed(lambda: chunked_cross_entropy(h, head, t, args.chunk), h, args.reps, cuda)
    ckpt = timed(lambda: checkpointed(h, head, t, args.chunk), h, args.reps, cuda)
    plain = timed(lambda: plain_cross_entropy(head(h), t), h, args.reps, cuda)
    print(f"device {args.device}, {args.tokens} tokens, hidden {args.hidden}, vocab {args.vocab}, chunk {args.chunk}")
    print("| loss (forward + backward) | ms | vs fused |")
    print("| --- | ---: | ---: |")
    for name, ms in (("chunked, fused (frozen head)", fused), ("chunked, checkpointed", ckpt), ("plain", plain)):
        print(f"| {name} | {ms:.1f} | {ms / fused:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
