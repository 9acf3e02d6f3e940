"""Generate (or load) the documents of one corpus, validate them, regenerate rejected ones with
a new request (the attempt number changes the seed, so the cache key differs) up to
validation.max_attempts, and write the documents JSONL and its report."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from ..io import DataError, atomic_write_json, read_jsonl
from ..llm.base import FINISH_LENGTH, GenRequest, GenResult
from .validate import Validator, words

log = logging.getLogger(__name__)
SPEC_FIELDS = ("id", "corpus", "institution", "domain", "doc_type", "reasoning", "seed")


def request_settings(generator_cfg: dict) -> dict:
    """Generation settings from a generator config (gemini: max_output_tokens; hf: max_new_tokens)."""
    mx = generator_cfg.get("max_output_tokens", generator_cfg.get("max_new_tokens", 4096))
    return {"max_new_tokens": int(mx), "temperature": float(generator_cfg.get("temperature", 1.0)),
            "top_p": float(generator_cfg.get("top_p", 1.0))}


def estimate_cost(generator_cfg: dict, tokens_in: int, tokens_out: int) -> float | None:
    """USD; 0 for local models and file sources, None when an API's prices are not configured."""
    from ..llm.registry import BACKENDS

    info = BACKENDS.get(generator_cfg.get("backend"))   # unknown (a test's stand-in): priced like an API
    if info is not None and not info.api:
        return 0.0
    from ..llm.cache import api_cost

    return api_cost(generator_cfg, tokens_in, tokens_out)


def spend_report(generator_cfg: dict, r: dict, api: dict | None, kept: int) -> dict:
    """Retries, tokens and cost for a report. With an API ledger (Gemini) they are totals over
    every run that used the cache, interrupted ones included — what was spent — and ``api``
    holds the ledger's counts (requests sent, replies by kind, retries, requests in flight at a
    kill); otherwise they count this run's results."""
    out: dict[str, Any] = {
        "estimated_cost_this_run_usd": estimate_cost(generator_cfg, r["tokens_in_new"], r["tokens_out_new"])}
    if api is None:
        out.update({"retries": r["regenerations"] + r["api_retries"], "api_retries": r["api_retries"],
                    "tokens_in": r["tokens_in"], "tokens_out": r["tokens_out"],
                    "estimated_cost_usd": estimate_cost(generator_cfg, r["tokens_in"], r["tokens_out"])})
        return out
    from ..llm.cache import spend

    out.update({"retries": r["regenerations"] + api["retries"], "api_retries": api["retries"],
                **spend(generator_cfg, api),
                "api": {**api, "requests_per_kept": (round(api["requests_sent"] / kept, 4) if kept else None)}})
    return out


def progress_bar(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, unit="req", dynamic_ncols=True)


def open_backend(generator_cfg: dict, cache: str):
    from ..llm.registry import make_backend
    from ..llm.cache import CachedBackend

    return CachedBackend(make_backend(generator_cfg), cache)


def run_with_regeneration(backend, items: list[dict], make_request, accept, max_attempts: int,
                          desc: str, allow_truncated: bool = False) -> dict:
    """Shared loop: request every pending item, judge results in item order (deterministic),
    re-request rejected ones with attempt+1. `make_request(item, attempt) -> GenRequest`;
    `accept(item, result) -> (ok, reason)`. Returns counters and per-item accepted results."""
    pending = list(items)
    accepted: dict[str, GenResult] = {}
    rejected: dict[str, int] = {}
    stats = {"requests": 0, "cached": 0, "regenerations": 0, "api_retries": 0,
             "tokens_in": 0, "tokens_out": 0, "tokens_in_new": 0, "tokens_out_new": 0}
    for attempt in range(1, max_attempts + 1):
        if not pending:
            break
        if attempt > 1:
            stats["regenerations"] += len(pending)
        reqs = [make_request(it, attempt) for it in pending]
        with progress_bar(len(reqs), f"{desc} (attempt {attempt})") as bar:
            results = backend.generate(reqs, progress=bar.update)
        nxt = []
        for it, res in zip(pending, results):
            stats["requests"] += 1
            stats["tokens_in"] += res.input_tokens
            stats["tokens_out"] += res.output_tokens
            if res.cached:
                stats["cached"] += 1
            else:
                stats["tokens_in_new"] += res.input_tokens
                stats["tokens_out_new"] += res.output_tokens
                stats["api_retries"] += max(0, res.attempts - 1)
            usable = res.ok or (allow_truncated and res.finish_reason == FINISH_LENGTH
                                and bool(res.text and res.text.strip()))
            if usable:
                ok, reason = accept(it, res)
            else:
                ok, reason = False, res.finish_reason
            if ok:
                accepted[it["id"]] = res
            else:
                rejected[reason] = rejected.get(reason, 0) + 1
                log.info("%s attempt %d rejected: %s", it["id"], attempt, reason)
                nxt.append(it)
        pending = nxt
    return {"accepted": accepted, "rejected_by_reason": rejected, "dropped": [it["id"] for it in pending],
            **stats}


def _load_file_source(cfg: dict) -> list[dict]:
    cols = cfg.get("columns") or {}
    tcol, icol = cols.get("text", "text"), cols.get("id", "id")
    if cfg.get("path"):
        p = Path(cfg["path"])
        if not p.exists():
            raise DataError(f"file source: {p} not found (generator key 'path')")
        if p.suffix == ".parquet":
            import pandas as pd

            rows = pd.read_parquet(p).to_dict("records")
        else:
            rows = read_jsonl(p)
        src = str(p)
    elif cfg.get("dataset"):
        import datasets

        ds = datasets.load_dataset(cfg["dataset"], revision=cfg.get("revision"), split=cfg.get("split") or "train")
        rows, src = list(ds), f"{cfg['dataset']}@{cfg.get('revision')}:{cfg.get('split', 'train')}"
    else:
        raise ValueError("file source: set 'path' (JSONL/Parquet) or 'dataset' (+ 'revision', 'split')")
    out = []
    for i, r in enumerate(rows, start=1):
        if tcol not in r:
            raise DataError(f"{src}: row {i} has no column {tcol!r} (generator key columns.text)")
        if not isinstance(r[tcol], str):
            raise DataError(f"{src}: row {i} column {tcol!r} is not a string")
        out.append({"source_id": str(r[icol]) if icol in r and r[icol] is not None else None,
                    "text": r[tcol], "row": i})
    return out


def generate_documents(specs: str, out: str, report: str, generator_cfg: dict, validation_cfg: dict,
                       corpus_def: dict | None, cache: str) -> dict:
    """Write results/documents/{corpus}.jsonl and its report; returns the report dict."""
    spec_rows = read_jsonl(specs)
    for i, s in enumerate(spec_rows, start=1):
        missing = [k for k in SPEC_FIELDS + ("prompt",) if k not in s]
        if missing:
            raise DataError(f"{specs}:{i}: spec lacks {missing}")
    corpus = spec_rows[0]["corpus"] if spec_rows else (corpus_def or {}).get("name")
    if corpus_def is not None and "_source" not in corpus_def:   # a raw YAML mapping: check it
        from .corpus import check_corpus_def

        corpus_def = check_corpus_def(corpus_def, source=f"corpus definition {corpus!r}")
    validator = Validator(validation_cfg, corpus_def)
    from ..llm.registry import BACKENDS

    kind = generator_cfg.get("backend")
    rep: dict[str, Any] = {"corpus": corpus, "requested": len(spec_rows), "backend": kind}

    if kind in BACKENDS and BACKENDS[kind].source:
        docs, rejected = [], {}
        source = _load_file_source(generator_cfg)
        for d in source:
            if len(docs) >= len(spec_rows):
                break
            spec = spec_rows[len(docs)]
            v = validator.check(spec["id"], d["text"])
            if not v.ok:
                rejected[v.reason] = rejected.get(v.reason, 0) + 1
                continue
            docs.append({**{k: spec[k] for k in SPEC_FIELDS}, "source_id": d["source_id"], "text": d["text"],
                         "model": None, "input_tokens": None, "output_tokens": None,
                         "n_words": len(words(d["text"])), "finish_reason": None, "attempt": None})
        rep.update({"source": {k: generator_cfg.get(k) for k in ("path", "dataset", "revision", "split")},
                    "source_rows": len(source), "generated": len(docs), "rejected_by_reason": rejected,
                    "dropped": len(spec_rows) - len(docs), "retries": 0, "tokens_in": None,
                    "tokens_out": None, "estimated_cost_usd": 0.0})
        from ..io import write_jsonl

        write_jsonl(out, docs)
        atomic_write_json(report, rep)
        return rep

    settings = request_settings(generator_cfg)
    attempt_of: dict[str, int] = {}

    def make_request(spec: dict, attempt: int) -> GenRequest:
        attempt_of[spec["id"]] = attempt
        return GenRequest(key=spec["id"], messages=[{"role": "user", "content": spec["prompt"]}],
                          seed=int(spec["seed"]) + 1_000_003 * (attempt - 1), **settings)

    def accept(spec: dict, res: GenResult):
        v = validator.check(spec["id"], res.text or "")
        return v.ok, v.reason

    backend = open_backend(generator_cfg, cache)
    try:
        r = run_with_regeneration(backend, spec_rows, make_request, accept, validator.max_attempts,
                                  f"documents {corpus}", allow_truncated=validator.allow_truncated)
    finally:
        backend.close()
    api = backend.api_summary() if hasattr(backend, "api_summary") else None
    docs = []
    for s in spec_rows:
        res = r["accepted"].get(s["id"])
        if res is None:
            continue
        docs.append({**{k: s[k] for k in SPEC_FIELDS}, "text": res.text, "model": res.model or backend.model_id,
                     "input_tokens": res.input_tokens, "output_tokens": res.output_tokens,
                     "n_words": len(words(res.text or "")), "finish_reason": res.finish_reason,
                     "attempt": attempt_of.get(s["id"])})
    rep.update({
        "generator": {k: v for k, v in generator_cfg.items() if k not in ("spec",)},
        "model": backend.model_id, "generated": len(docs), "rejected_by_reason": r["rejected_by_reason"],
        "dropped": len(r["dropped"]), "dropped_ids": r["dropped"], "requests": r["requests"],
        "cached_results": r["cached"], "regenerations": r["regenerations"],
        "validation": dict(validation_cfg or {}),
    })
    rep.update(spend_report(generator_cfg, r, api, len(docs)))
    from ..io import write_jsonl

    write_jsonl(out, docs)
    atomic_write_json(report, rep)
    return rep
