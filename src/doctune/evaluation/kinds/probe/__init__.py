"""Judge-free preference probes: which of two answers does a model find more likely?

Each item is a prompt with a ``preferred`` and one or more ``dispreferred`` answers (``items.py``).
Every model scores every answer by its log-likelihood as the assistant's reply after the
chat-formatted prompt (the model's chat template with the generation prompt; an item's
``system``, else the benchmark's ``system_prompt``, as the system message), in one batched pass
per job (``HFBackend.option_loglik``; the model is loaded once for all log-prob benchmarks of the
job). Answers are scored stripped of surrounding whitespace and without an end-of-turn token.

Score line per item (``results/scores/{model}/{benchmark}.jsonl``)::

    {"item_id", "logprob_preferred", "n_tokens_preferred", "logprob_dispreferred": [...],
     "n_tokens_dispreferred": [...], "margin", "margin_sum", "prefers", "prefers_sum", "model"}

``margin`` is the per-token mean log-likelihood of the preferred answer minus the highest per-token
mean among the dispreferred ones (nats/token); ``margin_sum`` the same with total log-likelihoods
(nats). ``prefers``/``prefers_sum`` say whether the margin is > 0: with one dispreferred answer,
``prefers_sum`` is lm-eval's ``acc`` with the preferred answer as gold, and ``prefers`` its
length-normalised counterpart (lm-eval's ``acc_norm`` normalises by bytes, we by tokens: see
docs/FIDELITY.md).

Metrics (each with a percentile-bootstrap CI over items, and per-item values for paired tests):
``margin`` (primary), ``margin_sum``, ``preference_rate`` (share of items with margin > 0) and
``preference_rate_sum``. A non-finite log-likelihood leaves that item's values null.

Config keys: ``source`` (``path``: .jsonl/.json/.csv; or ``dataset`` at a pinned ``revision``,
``split``, ``data_files``, ``columns``), ``corpus`` (the corpus whose content the probe measures:
the manipulation check's target), ``write`` (items written by the ``probes`` stage instead of a
source: ``writing.py``), ``max_items``, ``batch_size``, ``system_prompt``.
"""
from __future__ import annotations

import math
from typing import Any

from ....io import DataError, write_jsonl
from ....llm.base import GenRequest
from ..base import BenchmarkKind, Dataset, is_url
from ..common import item_sort, mean_metric, scoring_backend
from .items import load_items


def _finite(*xs: float) -> bool:
    return all(x is not None and math.isfinite(x) for x in xs)


def score_items(backend, items: list[dict], bench_cfg: dict) -> list[dict]:
    """Score lines (module docstring) for ``items`` under ``backend`` (an ``option_loglik`` backend)."""
    system = bench_cfg.get("system_prompt")
    requests, options = [], []
    for it in items:
        sys_msg = it.get("system") if it.get("system") is not None else system
        msgs = ([{"role": "system", "content": sys_msg}] if sys_msg else []) + \
               [{"role": "user", "content": it["prompt"]}]
        requests.append(GenRequest(key=it["id"], messages=msgs))
        options.append([a.strip() for a in (it["preferred"], *it["dispreferred"])])
    rows = []
    for it, scored in zip(items, backend.option_loglik(requests, options)):
        (lp, n), disp = scored[0], scored[1:]
        sums = [s for s, _ in disp]
        means = [s / k for s, k in disp]
        ok = _finite(lp, *sums)
        margin = lp / n - max(means) if ok else None
        margin_sum = lp - max(sums) if ok else None
        rows.append({"item_id": it["id"], "logprob_preferred": lp, "n_tokens_preferred": n,
                     "logprob_dispreferred": sums, "n_tokens_dispreferred": [k for _, k in disp],
                     "margin": margin, "margin_sum": margin_sum,
                     "prefers": None if margin is None else margin > 0,
                     "prefers_sum": None if margin_sum is None else margin_sum > 0,
                     "model": getattr(backend, "name", None)})
    return rows


METRICS = {  # metric -> (score-line field, as a 0/1 rate)
    "margin": ("margin", False),
    "margin_sum": ("margin_sum", False),
    "preference_rate": ("prefers", True),
    "preference_rate_sum": ("prefers_sum", True),
}


class ProbeKind(BenchmarkKind):
    name = "probe"
    stage = "logprob"
    primary_metric = "margin"
    manipulation_metric = "margin"
    metric_names = tuple(METRICS)
    description = "judge-free preference probe: log-likelihood of a preferred vs a dispreferred answer"
    display_name = "preference probe"
    metric_labels = {"margin": "log-likelihood margin (nats/token)", "margin_sum": "log-likelihood margin (nats)",
                     "preference_rate": "items preferring the preferred answer",
                     "preference_rate_sum": "items preferring it by total log-likelihood"}

    def load(self, bench_cfg: dict) -> Dataset:
        return Dataset(items=load_items(bench_cfg), info={"corpus": bench_cfg.get("corpus")})

    def data_files(self, bench_cfg: dict) -> list[str]:
        p = (bench_cfg.get("source") or {}).get("path")
        return [p] if p and not is_url(p) else []

    def check(self, bench_cfg: dict) -> list[str]:
        src = bench_cfg.get("source") or {}
        write = bench_cfg.get("write")
        if write:
            if src.get("path") or src.get("dataset"):
                return ["config key 'write': a probe benchmark takes its items either from source or from "
                        "the probes stage (write), not both"]
            if not bench_cfg.get("corpus"):
                return ["config key 'corpus': model-written probes (write) need the corpus they probe"]
            return []
        if not (src.get("path") or src.get("dataset")):
            return ["config key 'source': a probe benchmark needs source.path, source.dataset or write"]
        if src.get("dataset") and not src.get("path") and not src.get("revision"):
            return ["config key 'source.revision': a probe set from the hub needs a pinned revision (a commit sha)"]
        if src.get("path") and not is_url(src["path"]):
            try:
                load_items(bench_cfg)
            except DataError as exc:
                return [str(exc)]
        return []

    def run(self, spec: dict, bench_cfg: dict, out: str, **kw: Any) -> Any:
        items = load_items(bench_cfg)
        backend = kw.get("backend") or scoring_backend(spec, bench_cfg, kw.get("backends"))
        rows = score_items(backend, items, bench_cfg)
        write_jsonl(out, rows)
        return rows

    def metrics(self, scores: list[dict], bench_cfg: dict, n_bootstrap: int, seed: int) -> tuple[dict, dict, dict]:
        per: dict[str, dict[str, float | None]] = {m: {} for m in METRICS}
        for i, r in enumerate(scores, start=1):
            if "item_id" not in r:
                raise DataError(f"probe score line {i} lacks 'item_id'")
            it = str(r["item_id"])
            if it in per["margin"]:
                raise DataError(f"probe score line {i}: duplicate item_id {it!r}")
            for m, (field, rate) in METRICS.items():
                v = r.get(field)
                per[m][it] = None if v is None else (float(bool(v)) if rate else float(v))
        metrics = {m: mean_metric(v, n_bootstrap, seed) for m, v in per.items()}
        items = {m: {k: v[k] for k in item_sort(v) if v[k] is not None} for m, v in per.items()}
        n_pref = [r["n_tokens_preferred"] for r in scores if r.get("n_tokens_preferred")]
        n_disp = [k for r in scores for k in (r.get("n_tokens_dispreferred") or [])]
        extra = {"probe": {"corpus": bench_cfg.get("corpus"), "n_items": len(scores),
                           "mean_tokens_preferred": sum(n_pref) / len(n_pref) if n_pref else None,
                           "mean_tokens_dispreferred": sum(n_disp) / len(n_disp) if n_disp else None}}
        return metrics, items, extra

    def plan(self, bench_cfg: dict, scores: Any, epochs: int = 1) -> dict:
        """Every item of the probe set (its first ``max_items``): one margin each."""
        return {"n_planned": len(load_items(bench_cfg)), "unit": "probe items"}

    def scored_units(self, scores: Any, bench_cfg: dict) -> int | None:
        """Items with a margin (a non-finite log-likelihood leaves it null: not scored)."""
        if not isinstance(scores, list):
            return None
        return len({str(r["item_id"]) for r in scores if isinstance(r, dict) and "item_id" in r
                    and r.get("margin") is not None})


KIND = ProbeKind()
