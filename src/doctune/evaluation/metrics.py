"""Aggregate one model's scores on one benchmark into its metrics file, through the benchmark's
kind (``kind.read_scores`` + ``kind.metrics``; see ``doctune.evaluation.kinds``).

Output ``results/metrics/{model}/{benchmark}.json``: ``{"model", "benchmark", "kind", "status",
"reason", "primary_metric", "metrics", "items", "bootstrap", ...}``. Every metric is ``{"value",
"ci_low", "ci_high", "n", "n_missing"}`` with seeded percentile-bootstrap CIs over items; a metric
that could not be computed has ``value: null`` (never 0), and a file where nothing could be scored
has ``"status": "missing"`` and a ``"reason"``. ``items`` holds per-item scores ({metric: {item:
score}}) for paired comparisons. Judged kinds add ``judging`` (units and null verdicts per judge)
and, with several judges, ``judge_agreement``.
"""
from __future__ import annotations

import logging
from typing import Any

from ..io import atomic_write_json
from .kinds import get_kind
from .kinds.common import item_sort, mean, mean_metric, metric  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)


def primary_metric(kind: str) -> str:
    return get_kind(kind).primary_metric


def gate_summary(gate: str) -> dict:
    """What a metrics file records of its benchmark's judge gate (``judge_gate.py``): status, note,
    and each judge's kappa and accuracy; a gate that could not run is ``unvalidated``."""
    from ..io import missing_marker
    from .judge_gate import gate_note, read_gate

    reason = missing_marker(gate)
    if reason is not None:
        return {"status": "unvalidated", "note": f"JUDGE UNVALIDATED: the gate could not run ({reason})"}
    g = read_gate(gate)
    return {"status": g["status"], "note": gate_note(g), "min_kappa": g.get("min_kappa"),
            "judges": {j: {k: r.get(k) for k in ("status", "kappa", "accuracy", "n_answers", "n_units", "n_null")}
                       for j, r in (g.get("judges") or {}).items()}}


def compute_metrics(model: str, benchmark: str, bench_cfg: dict, scores: str, out: str,
                    n_bootstrap: int = 1000, seed: int = 0, gate: str | None = None) -> dict:
    """Write the metrics JSON of one model on one benchmark; returns it. ``gate`` is the judge
    gate file of a judged benchmark (its verdict is recorded as ``judge_gate``)."""
    try:
        kind = get_kind(bench_cfg.get("kind"))
    except ValueError as exc:
        raise ValueError(f"benchmark {benchmark!r}: {exc}") from None
    data = kind.read_scores(scores)
    reason: str | None = None
    items: dict = {}
    extra: dict = {}
    rows = data
    if isinstance(data, list):
        marker = next((r for r in data if r.get("status") == "missing"), None)
        if marker is not None:
            reason = marker.get("reason") or "benchmark could not be scored"
            rows = []
        if not rows:
            reason = reason or f"{scores} holds no scored units"
    kind_primary = kind.primary_metric
    if reason is not None:
        metrics = {m: metric(None) for m in kind.metric_names}
    else:
        metrics, items, extra = kind.metrics(rows, bench_cfg, n_bootstrap, seed)
        extra = dict(extra)
        reason = extra.pop("reason", None)
        kind_primary = extra.pop("primary_metric", None) or kind_primary
        if kind.stage == "judge" and isinstance(rows, list) and rows:
            by_judge: dict[str, dict] = {}
            for r in rows:
                j = by_judge.setdefault(str(r.get("judge")), {"units": 0, "null_verdicts": 0,
                                                              "judge_model": r.get("judge_model")})
                j["units"] += 1
                j["null_verdicts"] += r.get("score") is None
            extra["judging"] = {"units": len(rows), "null_verdicts": sum(j["null_verdicts"] for j in by_judge.values()),
                                "by_judge": by_judge}
            answered = {(str(r.get("item_id")), r.get("epoch")): bool(r.get("truncated")) for r in rows}
            extra["completions"] = {"n": len(answered), "n_truncated": sum(answered.values())}
            if extra["completions"]["n_truncated"]:
                log.warning("%s/%s: %d of %d completions were cut off at max_new_tokens", model, benchmark,
                            extra["completions"]["n_truncated"], len(answered))
            if len(by_judge) > 1:
                from ..analysis.agreement import judge_agreement

                extra["judge_agreement"] = judge_agreement(rows)
        if reason is None and metrics.get(kind_primary, {}).get("value") is None:
            reason = "no item has a valid score (every verdict null or missing)"
    primary = bench_cfg.get("primary_metric") or kind_primary
    if primary not in metrics and reason is None:
        raise ValueError(f"benchmark {benchmark!r}: primary_metric {primary!r} is not one of {sorted(metrics)}")
    status = "ok" if reason is None else "missing"
    result: dict[str, Any] = {
        "model": model, "benchmark": benchmark, "kind": kind.name, "status": status, "reason": reason,
        "primary_metric": primary, "metrics": metrics, "items": items,
        "bootstrap": {"n_bootstrap": int(n_bootstrap), "seed": int(seed), "ci": "percentile 95%"},
        **extra,
    }
    if gate is not None:
        result["judge_gate"] = gate_summary(gate)
    try:
        from ..workflow import provenance
    except ImportError:  # pragma: no cover - provenance is wired by the lead
        provenance = None
    if provenance is not None and hasattr(provenance, "record"):
        result["provenance"] = provenance.record(bench_cfg, [scores], "metrics")
    atomic_write_json(out, result)
    return result
