"""The template grid: which (institution, domain, document type, reasoning) cell each planned
document uses.

Coverage and determinism:
- The order is a deterministic function of (seed, grid sizes) only, produced one spec at a time,
  so the first N specs for a larger N are exactly the specs for N (a rerun with more documents
  only generates the new ones).
- No cell is used twice before every cell of the grid has been used once (a used-cell set; once
  every cell is used, a new round starts).
- Each dimension is also balanced on its own: values are drawn from that dimension's own stream
  of shuffled blocks (every institution once per 50 specs, every domain once per 40, ...). When
  the combined cell was already used, the next unused cell of a seeded permutation of all cells
  is taken instead.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

from ..io import stable_hash, write_jsonl
from .corpus import (DIM_FIELD, GRID_DIMS, apply_run_settings, load_corpus_def, load_grid, load_template,
                     render_prompt)


def _blocks(size: int, rng: random.Random) -> Iterator[int]:
    while True:
        block = list(range(size))
        rng.shuffle(block)
        yield from block


def grid_order(sizes: tuple[int, ...], seed: int) -> Iterator[tuple[int, ...]]:
    """Endless sequence of grid cells (tuples of indices), see the module docstring."""
    total = 1
    for s in sizes:
        total *= s
    streams = [_blocks(s, random.Random(f"doctune-grid:{seed}:dim{d}")) for d, s in enumerate(sizes)]

    def encode(cell: tuple[int, ...]) -> int:
        idx = 0
        for c, s in zip(cell, sizes):
            idx = idx * s + c
        return idx

    def decode(idx: int) -> tuple[int, ...]:
        out = []
        for s in reversed(sizes):
            out.append(idx % s)
            idx //= s
        return tuple(reversed(out))

    rnd = 0
    while True:
        used: set[int] = set()
        perm: list[int] | None = None
        ptr = 0
        while len(used) < total:
            cell = tuple(next(st) for st in streams)
            idx = encode(cell)
            if idx in used:
                if perm is None:  # built lazily: rarely needed for N much below the grid size
                    perm = list(range(total))
                    random.Random(f"doctune-grid:{seed}:round{rnd}").shuffle(perm)
                while perm[ptr] in used:
                    ptr += 1
                idx = perm[ptr]
                cell = decode(idx)
            used.add(idx)
            yield cell
        rnd += 1


def make_specs(corpus: str, n: int, seed: int, resources_dir: str | Path,
               corpus_def: dict | None = None) -> list[dict]:
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"corpora.{corpus}.n must be a non-negative integer, got {n!r}")
    if not isinstance(seed, int):
        raise ValueError(f"corpora.{corpus}.seed must be an integer, got {seed!r}")
    cdef = corpus_def or load_corpus_def(resources_dir, corpus)
    grid = load_grid(resources_dir, cdef)
    template = load_template(resources_dir, cdef)
    sizes = tuple(len(grid[d]) for d in GRID_DIMS)
    specs = []
    order = grid_order(sizes, seed)
    for i in range(n):
        cell_idx = next(order)
        cell = {DIM_FIELD[d]: grid[d][j] for d, j in zip(GRID_DIMS, cell_idx)}
        specs.append({
            "id": f"{corpus}-{i:05d}",
            "corpus": corpus,
            **cell,
            "seed": int(stable_hash(["doctune-spec", corpus, seed, i], 8), 16) & 0x7FFFFFFF,
            "prompt": render_prompt(template, cdef, cell),
        })
    return specs


def write_specs(corpus: str, corpus_cfg: dict, resources_dir: str, out: str) -> int:
    """Write results/specs/{corpus}.jsonl (atomically) for `corpora.<corpus>` = {n, generator, seed}.

    The corpus definition is resources_dir/corpora/{corpus}.yaml, or corpus_cfg["definition"]."""
    for key in ("n", "seed"):
        if key not in corpus_cfg:
            raise ValueError(f"corpora.{corpus}: missing key {key!r}")
    cdef = apply_run_settings(load_corpus_def(resources_dir, corpus, corpus_cfg.get("definition")), corpus_cfg)
    specs = make_specs(corpus, corpus_cfg["n"], corpus_cfg["seed"], resources_dir, cdef)
    return write_jsonl(out, specs)
