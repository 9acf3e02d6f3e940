"""Replay (preservation) data: the n standard fine-tuning samples plus round(fraction x n) of an
arm's own documents, shuffled together deterministically. Document rows carry "text" instead of
"messages"; the trainer gives them full language-modelling loss."""
from __future__ import annotations

import random

from ..io import DataError, iter_jsonl, read_jsonl, write_jsonl


def write_replay(posttrain: str, documents: list[str], fraction: float, seed: int, out: str) -> dict:
    if not 0 <= fraction <= 1:
        raise ValueError(f"replay_fraction must be in [0, 1], got {fraction}")
    samples = read_jsonl(posttrain)
    docs = [r for p in documents for r in iter_jsonl(p) if isinstance(r.get("text"), str) and r["text"].strip()]
    k = round(fraction * len(samples))
    if k and not docs:
        raise DataError(f"replay needs documents, but {documents} hold none")
    rng = random.Random(f"doctune-replay:{seed}:{fraction}")
    # cycle through a shuffled copy so k may exceed the number of documents
    order = list(range(len(docs)))
    picked = []
    while len(picked) < k:
        rng.shuffle(order)
        picked += order[: k - len(picked)]
    rows = list(samples) + [{"id": f"replay-{i:05d}-{docs[j].get('id', j)}", "text": docs[j]["text"],
                             "replay_of": docs[j].get("id")} for i, j in enumerate(picked)]
    rng.shuffle(rows)
    write_jsonl(out, rows)
    return {"n_samples": len(samples), "n_replay": k, "n_documents_available": len(docs)}
