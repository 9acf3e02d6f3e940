"""The first n documents of a corpus, for an arm with ``n_docs`` (a dose-response sweep over the
number of documents trains on prefixes of one corpus, generated and paid for once at its largest
size).

Why a prefix is a fair smaller corpus: specs are planned one at a time in a fixed order
(``doctune.documents.specs``) and the documents file keeps that order, so the first n documents
are the same whatever the corpus's full size, and growing the corpus only generates new ones.
The order walks the template grid evenly: no grid cell twice before every cell is used, and each
dimension's values come in shuffled blocks (every institution once per 50 specs, every domain
once per 40...), so any prefix holds each value of each dimension about equally often. A rare
exception is a spec whose drawn cell was already used (it takes the next unused cell instead); the
measured departure from even counts for the paper's grid is in docs/FIDELITY.md.
"""
from __future__ import annotations

from ..io import DataError, iter_jsonl, write_jsonl


def write_prefix(documents: str, n: int, out: str, key: str = "n_docs") -> int:
    """Write the first n records of ``documents`` to ``out`` (atomically); returns n. Fewer than n
    documents is an error naming ``key``."""
    recs = []
    for rec in iter_jsonl(documents):
        if len(recs) == n:
            break
        recs.append(rec)
    if len(recs) < n:
        raise DataError(f"config key '{key}': asks for the first {n} documents, but {documents} holds only "
                        f"{len(recs)} (raise the corpus's n, or validation dropped some: see its report)")
    return write_jsonl(out, recs)
