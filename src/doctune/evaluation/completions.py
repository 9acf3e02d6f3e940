"""Sample completions of one model on one judged benchmark (AHB, compassion, StrongREJECT).

gen_cfg keys (config `evaluation.generation`, overridable per benchmark):
    max_new_tokens (int, 512), temperature (float, 1.0; 0 = greedy), top_p (float, 1.0),
    batch_size (int or "auto", "auto"), epochs (int, 1: samples per item; the AHB paper runs used 30),
    seed (int, 0), backend ("auto" | "hf" | "vllm"; auto = vLLM when importable and CUDA is present,
    else transformers), cache_implementation (None | "dynamic" | "static"), compile (bool|None),
    dtype/device (optional, passed to the model loader).

Each (item, epoch) is one request whose seed is derived from (seed, benchmark, item id, epoch), so a
sample does not depend on which other requests are generated with it (see doctune.llm.hf).

Caching: every finished completion is appended at once to the AppendCache at `cache`, keyed by
(model fingerprint, benchmark, item id, epoch, prompt messages, sampling settings). The model
fingerprint is the spec's hash plus the sha256 of every adapter's weight and config files, so a
retrained adapter at the same path never reuses old completions. A rerun generates only what is
missing (and loads no model when nothing is). Completions cut off at max_new_tokens are kept
(finish_reason "length"): they are what the model produced under the configured budget.

Output rows (results/completions/{model}/{benchmark}.jsonl), ordered by item then epoch:
    {"id", "epoch", "prompt", "completion", "finish_reason", "model",
     "generation": {"max_new_tokens", "temperature", "top_p", "seed" (the request's), "base_seed", "backend"},
     "input_tokens", "output_tokens"}
"""
from __future__ import annotations

import logging
import sys

from ..io import AppendCache, stable_hash, write_jsonl
from ..llm.base import FINISH_ERROR, GenRequest, GenResult
from ..models import model_fingerprint

log = logging.getLogger(__name__)

def make_generation_backend(spec: dict, gen_cfg: dict, kind: str):
    """The completions backend ``kind`` (registry.resolve_completions_backend) for a model."""
    from ..llm.registry import make_backend

    return make_backend({"backend": kind, "spec": spec, "batch_size": gen_cfg["batch_size"],
                         "cache_implementation": gen_cfg.get("cache_implementation"), "compile": gen_cfg.get("compile"),
                         "device": gen_cfg.get("device"), "dtype": gen_cfg.get("dtype"),
                         "repetition_penalty": gen_cfg.get("repetition_penalty"), "seed": gen_cfg.get("seed", 0)})


def _messages(item: dict, bench_cfg: dict, where: str) -> list[dict]:
    if item.get("messages"):
        return list(item["messages"])
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"{where}: item {item.get('id')!r} has no prompt")
    system = item.get("system") or bench_cfg.get("system_prompt")
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def request_seed(base_seed: int, benchmark: str, item_id: str, epoch: int) -> int:
    return int(stable_hash([int(base_seed), benchmark, item_id, int(epoch)], 12), 16) % (2**31 - 1)


def generate_completions(spec: dict, benchmark: str, bench_cfg: dict, gen_cfg: dict, out: str, cache: str,
                         items: list[dict] | None = None, backend=None, backends: dict | None = None) -> dict:
    """Write every (item, epoch) completion of `spec` on `benchmark` to `out`.

    `items` ([{"id", "prompt"|"messages", "system"?}]) bypasses the benchmark loader; `backend`
    may be passed to reuse a loaded model (it is only used when something is missing);
    `backends` ({settings: backend}), shared between calls, keeps each backend this function
    makes, so one job can run a model on several benchmarks and load it once.
    Returns {"rows", "generated", "cached"}."""
    from ..workflow.config import schema_defaults

    g = {**schema_defaults("$defs", "generation"), **{k: v for k, v in (gen_cfg or {}).items() if v is not None}}
    for k in ("max_new_tokens", "batch_size", "epochs"):
        if k == "batch_size" and g[k] == "auto":
            continue
        if not isinstance(g[k], int) or isinstance(g[k], bool) or g[k] < 1:
            raise ValueError(f"generation.{k} must be a positive integer, got {g[k]!r}")
    if float(g["temperature"]) < 0 or not 0 < float(g["top_p"]) <= 1:
        raise ValueError(f"generation: temperature must be >= 0 and 0 < top_p <= 1 (got {g['temperature']}, {g['top_p']})")
    if items is None:
        from .kinds import get_kind

        items = get_kind(bench_cfg.get("kind")).prompts(bench_cfg)
    ids = [str(it.get("id")) for it in items]
    if len(set(ids)) != len(ids) or any(i in ("", "None") for i in ids):
        raise ValueError(f"benchmark {benchmark!r}: item ids must be present and unique")

    settings = {"max_new_tokens": int(g["max_new_tokens"]), "temperature": float(g["temperature"]),
                "top_p": float(g["top_p"]), "base_seed": int(g["seed"])}
    fp = spec.get("fingerprint") or model_fingerprint(spec)   # load_spec computed it
    model_name = spec.get("name", "model")
    store = AppendCache(cache)
    try:
        planned = []  # (item, epoch, messages, key, request)
        for it, iid in zip(items, ids):
            msgs = _messages(it, bench_cfg, f"benchmark {benchmark!r}")
            for epoch in range(int(g["epochs"])):
                key = stable_hash([fp, benchmark, iid, epoch, msgs, settings], 32)
                req = GenRequest(key=key, messages=msgs, max_new_tokens=settings["max_new_tokens"],
                                 temperature=settings["temperature"], top_p=settings["top_p"],
                                 seed=request_seed(settings["base_seed"], benchmark, iid, epoch))
                planned.append((it, iid, epoch, msgs, key, req))
        missing = [p for p in planned if p[4] not in store]
        log.info("%s/%s: %d completions, %d cached, %d to generate", model_name, benchmark,
                 len(planned), len(planned) - len(missing), len(missing))
        errors: list[GenResult] = []
        if missing:
            from ..llm.registry import SCORER, resolve_completions_backend

            kind = getattr(backend, "kind", None) or (resolve_completions_backend(g["backend"]) if backend is None
                                                      else SCORER)
            if backend is None:
                bkey = (kind, *(str(g.get(k)) for k in ("batch_size", "cache_implementation", "compile",
                                                         "device", "dtype", "seed")))
                backend = (backends or {}).get(bkey) or make_generation_backend(spec, g, kind)
                if backends is not None:
                    backends[bkey] = backend
            from tqdm import tqdm

            bar = tqdm(total=len(missing), desc=f"completions {model_name}/{benchmark}", file=sys.stderr)

            def keep(res: GenResult) -> None:
                if res.finish_reason == FINISH_ERROR or res.text is None:
                    errors.append(res)
                    return
                store.put(res.key, {"completion": res.text, "finish_reason": res.finish_reason,
                                    "input_tokens": res.input_tokens, "output_tokens": res.output_tokens,
                                    "backend": kind, "sampler": getattr(backend, "sampler", None)})

            try:
                backend.generate([p[5] for p in missing], progress=bar.update, on_result=keep)
            finally:
                bar.close()
        if errors:
            raise RuntimeError(f"{len(errors)} completions of {model_name}/{benchmark} failed "
                               f"(first: {errors[0].error or errors[0].finish_reason}); rerun to retry them")
        rows = []
        for it, iid, epoch, msgs, key, req in planned:
            rec = store.get(key)
            if rec is None:
                raise RuntimeError(f"completion {iid}/epoch {epoch} was not generated")
            rows.append({
                "id": iid, "epoch": epoch, "prompt": msgs[-1]["content"], "completion": rec["completion"],
                "finish_reason": rec["finish_reason"], "model": model_name,
                "generation": {"max_new_tokens": settings["max_new_tokens"], "temperature": settings["temperature"],
                               "top_p": settings["top_p"], "seed": req.seed, "base_seed": settings["base_seed"],
                               "backend": rec.get("backend"), "sampler": rec.get("sampler")},
                "input_tokens": rec.get("input_tokens"), "output_tokens": rec.get("output_tokens"),
            })
        write_jsonl(out, rows)
        return {"rows": len(rows), "generated": len(missing), "cached": len(planned) - len(missing)}
    finally:
        store.close()
