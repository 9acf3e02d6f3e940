"""Aggregate one model's scores on one benchmark into its metrics file, through the benchmark's
kind (``kind.read_scores`` + ``kind.metrics``; see ``doctune.evaluation.kinds``).

Output ``results/metrics/{model}/{benchmark}.json``: ``{"model", "benchmark", "kind", "status",
"reason", "primary_metric", "n_planned", "n_scored", "complete", "plan", "metrics", "items",
"bootstrap", ...}``. Every metric is ``{"value",
"ci_low", "ci_high", "n", "n_missing"}`` with seeded percentile-bootstrap CIs over items; a metric
that could not be computed has ``value: null`` (never 0), and a file where nothing could be scored
has ``"status": "missing"`` and a ``"reason"``. ``items`` holds per-item scores ({metric: {item:
score}}) for paired comparisons. Judged kinds add ``judging`` (units and null verdicts per judge)
and, with several judges, ``judge_agreement``.

Completeness audit: ``n_planned`` is what the run planned for this model and benchmark, counted by
the kind from the config and the benchmark's data (``kind.plan``: judged kinds, items x variable
sets x epochs x judges; log-prob kinds, items; lm_eval, its documents after ``limit``; inspect,
samples x epochs), ``n_scored`` the units that got a usable score (``kind.scored_units``: a lost
score line or a null verdict is not scored), ``complete`` whether they agree (null when the plan
cannot be counted, e.g. hub data unreachable here; ``plan.error`` says why) and ``plan`` what a
unit is and the factors. A file whose counts differ keeps ``status: ok`` (its metrics stand on
what was scored); the summary marks its rows ``incomplete`` and the comparisons flag them.
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


def planned_epochs(bench_cfg: dict, epochs: int | None = None) -> int:
    """Completions per item of a benchmark: ``epochs`` as the pipeline resolved it, else the
    benchmark's ``epochs`` or ``generation.epochs``, else the schema's default."""
    if epochs is not None:
        return int(epochs)
    v = bench_cfg.get("epochs") or (bench_cfg.get("generation") or {}).get("epochs")
    if v:
        return int(v)
    from ..workflow.config import schema_defaults

    return int(schema_defaults("$defs", "generation").get("epochs") or 1)


def completeness(kind, scores, bench_cfg: dict, epochs: int | None = None) -> dict:
    """The completeness audit of one metrics file: ``n_planned`` (what the run planned, from the
    config and the benchmark's data: ``kind.plan``), ``n_scored`` (units with a usable score:
    ``kind.scored_units``), ``complete`` (n_scored == n_planned; None when either is unknown)
    and ``plan`` (what a unit is and the factors, or why the plan could not be counted)."""
    try:
        plan = dict(kind.plan(bench_cfg, scores, epochs=planned_epochs(bench_cfg, epochs)))
    except Exception as exc:  # noqa: BLE001 - the data may be unreachable here; the metrics still stand
        log.warning("%s: the plan could not be counted: %s: %s", kind.name, type(exc).__name__, exc)
        plan = {"n_planned": None, "error": f"{type(exc).__name__}: {exc}"[:500]}
    n_planned = plan.pop("n_planned", None)
    n_scored = kind.scored_units(scores, bench_cfg)
    complete = None if n_planned is None or n_scored is None else n_scored == n_planned
    return {"n_planned": n_planned, "n_scored": n_scored, "complete": complete, "plan": plan}


def compute_metrics(model: str, benchmark: str, bench_cfg: dict, scores: str, out: str,
                    n_bootstrap: int = 1000, seed: int = 0, gate: str | None = None,
                    epochs: int | None = None) -> dict:
    """Write the metrics JSON of one model on one benchmark; returns it. ``gate`` is the judge
    gate file of a judged benchmark (its verdict is recorded as ``judge_gate``); ``epochs`` the
    completions per item the run planned for it (``planned_epochs``; the completeness audit)."""
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
    audit = completeness(kind, data, bench_cfg, epochs)
    if audit["complete"] is False:
        log.warning("%s/%s: scored %s of %s planned units", model, benchmark, audit["n_scored"], audit["n_planned"])
    result: dict[str, Any] = {
        "model": model, "benchmark": benchmark, "kind": kind.name, "status": status, "reason": reason,
        "primary_metric": primary, **audit, "metrics": metrics, "items": items,
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
