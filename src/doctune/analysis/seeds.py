"""Seed averages: the metrics of an arm trained with several seeds.

Per-item scores are averaged over the seeds (so comparisons test seed-averaged per-question
scores), each metric's value is the mean over seeds, and the spread across seeds is reported
(seed_values, seed_sd, a t-interval across seeds). A seed whose metric is missing is left out of
that metric and counted in n_seeds_missing; it is never averaged in as 0. The completeness audit
(n_planned, n_scored) adds up the seeds' (``seed_completeness``)."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..io import atomic_write_json, read_json


def _t_interval(values: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    if len(values) < 2:
        return None, None
    from scipy import stats

    m = float(np.mean(values))
    se = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    h = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * se
    return m - h, m + h


def _bootstrap_ci(x: np.ndarray, n_bootstrap: int, seed: int, level: float = 0.95) -> tuple[float | None, float | None]:
    if len(x) < 2:
        return None, None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_bootstrap, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def seed_completeness(per_seed: dict[str, dict]) -> dict:
    """The completeness audit of a seed average: every seed model's plan and scored units added
    up (a seed whose benchmark is missing scored none of its plan), so the average is complete
    only when every seed is. The seeds share the benchmark's config, so a seed whose file holds
    no plan (a missing marker) is counted with another seed's; n_planned is null when no seed's
    plan is known. ``plan.by_seed`` keeps each seed's own counts."""
    def _int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    known = [d.get("n_planned") for d in per_seed.values() if _int(d.get("n_planned"))]
    planned = [d.get("n_planned") if _int(d.get("n_planned")) else (known[0] if known else None)
               for d in per_seed.values()]
    scored = [d.get("n_scored") if d.get("status") == "ok" else (d.get("n_scored") or 0)
              for d in per_seed.values()]
    n_planned = sum(planned) if known else None
    n_scored = sum(scored) if all(_int(x) for x in scored) else None
    return {"n_planned": n_planned, "n_scored": n_scored,
            "complete": None if n_planned is None or n_scored is None else n_planned == n_scored,
            "plan": {"unit": next((d.get("plan", {}).get("unit") for d in per_seed.values()
                                   if isinstance(d.get("plan"), dict) and d["plan"].get("unit")), "units"),
                     "by_seed": {m: {"n_planned": d.get("n_planned"), "n_scored": d.get("n_scored")}
                                 for m, d in per_seed.items()}}}


def aggregate_seed_metrics(model: str, benchmark: str, seed_files: dict[str, str], out: str,
                           n_bootstrap: int = 2000, seed: int = 0) -> dict:
    """Write the seed-averaged metrics JSON of `model` from its seed models' metrics files."""
    per_seed = {m: read_json(p) for m, p in seed_files.items()}
    ok = {m: d for m, d in per_seed.items() if d.get("status") == "ok"}
    first = next(iter(per_seed.values()))
    result: dict[str, Any] = {
        "model": model, "benchmark": benchmark, "kind": first.get("kind"),
        "primary_metric": first.get("primary_metric"), "seed_models": list(seed_files),
        "n_seeds": len(ok), "n_seeds_missing": len(per_seed) - len(ok),
        "metrics": {}, "items": {},
    }
    if not ok:
        reasons = "; ".join(f"{m}: {d.get('reason')}" for m, d in per_seed.items())
        result.update(status="missing", reason=f"no seed model has this benchmark ({reasons})",
                      **seed_completeness(per_seed))
        atomic_write_json(out, result)
        return result
    result.update(status="ok", reason=None, **seed_completeness(per_seed))
    names: list[str] = []
    for d in ok.values():
        names += [k for k in d.get("metrics", {}) if k not in names]
    for name in names:
        vals = {m: d["metrics"].get(name, {}).get("value") for m, d in ok.items()}
        present = [v for v in vals.values() if v is not None]
        entry: dict[str, Any] = {"seed_values": vals, "n_seeds": len(present),
                                 "n_seeds_missing": len(per_seed) - len(present)}
        item_maps = [d.get("items", {}).get(name) for d in ok.values() if d.get("items", {}).get(name)]
        if item_maps:
            ids = sorted(set().union(*item_maps), key=str)
            avg = {}
            for i in ids:
                xs = [mp[i] for mp in item_maps if mp.get(i) is not None]
                if xs:
                    avg[i] = float(np.mean(xs))
            result["items"][name] = avg
            arr = np.array(list(avg.values()), dtype=float)
            lo, hi = _bootstrap_ci(arr, n_bootstrap, seed)
            entry.update(value=float(arr.mean()) if len(arr) else None, ci_low=lo, ci_high=hi, n=len(arr),
                         n_missing=len(ids) - len(arr), ci_method="bootstrap over seed-averaged items")
        else:
            lo, hi = _t_interval(present)
            entry.update(value=float(np.mean(present)) if present else None, ci_low=lo, ci_high=hi,
                         n=max((ok[m]["metrics"].get(name, {}).get("n") or 0) for m in ok),
                         n_missing=sum((ok[m]["metrics"].get(name, {}).get("n_missing") or 0) for m in ok),
                         ci_method="t-interval across seeds")
        entry["seed_sd"] = float(np.std(present, ddof=1)) if len(present) >= 2 else None
        s_lo, s_hi = _t_interval(present)
        entry["seed_ci_low"], entry["seed_ci_high"] = s_lo, s_hi
        result["metrics"][name] = entry
    atomic_write_json(out, result)
    return result
