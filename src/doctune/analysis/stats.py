"""Significance tests between models on the metrics JSON files.

Each comparison row compares one metric of one benchmark between two models (a - b):

* per-item scores on the same items (``items[metric]`` in both files, ids overlapping in at least
  two items): paired t-test, Wilcoxon signed-rank and a paired sign-flip permutation test (exact
  when the number of non-zero differences is at most ``permutation_exact_max``, else Monte Carlo),
  and a percentile bootstrap CI of the mean difference;
* per-item scores that do not align (fewer than two shared ids): Welch t-test, Mann-Whitney U
  and an unpaired label permutation test, bootstrap CI of the difference of means;
* no per-item scores on one side: a z-test from the two CIs (or stderrs), assuming normal
  intervals at ``ci_level``.

p-values are corrected with Holm's step-down method within each family (default: every row of
the file). A row whose inputs are missing stays in the table with ``status = missing`` and a note
naming what is missing; its p-values are empty.

Completeness: a row whose side's metrics file scored fewer (or other) units than the run planned
(``n_planned`` != ``n_scored``, doctune.evaluation.metrics) keeps its test and status but says so:
column ``completeness`` is ``incomplete`` and the note starts with ``INCOMPLETE: MODEL scored N of
M planned units`` (after a failed judge gate's flag); ``complete`` when both sides' counts agree,
``unknown`` when a side's plan could not be counted. The manipulation check and the dose-response
rows built on ``compare_one`` carry the same note.
"""
from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from ..io import DataError, atomic_write_text, read_json, stable_hash

# Columns of comparisons.tsv: the DESIGN.md contract first, in its order, then the extras.
CONTRACT_COLUMNS = ["benchmark", "metric", "model_a", "model_b", "diff", "ci_low", "ci_high",
                    "p_value", "test", "n"]
COLUMNS = CONTRACT_COLUMNS + ["value_a", "value_b", "p_holm", "n_missing", "p_t", "p_wilcoxon",
                              "p_permutation", "status", "note", "family", "significant",
                              "n_seeds_a", "n_seeds_b", "judge_gate", "completeness"]

# Keys run_comparisons takes beside the config's stats section (the rule passes them).
RUN_KEYS: dict[str, Any] = {"posttrain_sizes": [], "demo": False}
# Keys of the config's stats section that run_comparisons accepts but does not use itself.
_IGNORED_KEYS = {"comparisons"}
_COMPARISON_KEYS = {"a", "b", "benchmarks", "metrics", "at_posttrain_sizes", "family"}
DEFAULT_FAMILY = "all"
# Level of the CIs stored in metrics files (doctune.evaluation.metrics: percentile 95%; lm-eval:
# value +- 1.96 stderr), used to recover a standard error when there are no per-item scores.
STORED_CI_LEVEL = 0.95

DEMO_BANNER = ("# DEMO: these numbers come from a demo configuration (demo: true; a tiny or small model, "
               "a few documents and questions); they exercise the pipeline and are no evidence.")


# ----------------------------------------------------------------------------- configuration
def stats_defaults() -> dict:
    """The defaults: config/schema.yaml's `stats` object (without the comparisons) and RUN_KEYS."""
    from ..workflow.config import schema_defaults

    d = {k: v for k, v in schema_defaults("properties", "stats").items() if k not in _IGNORED_KEYS}
    return {**d, **RUN_KEYS}


def resolve_stats_cfg(stats_cfg: dict | None) -> dict:
    """stats_cfg with defaults filled in; unknown keys and wrong types raise ValueError."""
    cfg = stats_defaults()
    known = sorted(cfg)
    for key, val in (stats_cfg or {}).items():
        if key in _IGNORED_KEYS:
            continue
        if key not in known:
            raise ValueError(f"stats: unknown key {key!r} (known: {known})")
        cfg[key] = val

    def _int(key: str, minimum: int) -> None:
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ValueError(f"stats.{key} must be an integer >= {minimum}, got {v!r}")

    _int("n_bootstrap", 1)
    _int("n_permutations", 1)
    _int("seed", 0)
    _int("permutation_exact_max", 0)
    if cfg["ci_level"] is None:
        cfg["ci_level"] = 1 - cfg["alpha"]
    for key in ("alpha", "ci_level"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
            raise ValueError(f"stats.{key} must be a number in (0, 1), got {v!r}")
    if cfg["correction"] not in ("holm", "none"):
        raise ValueError(f"stats.correction must be 'holm' or 'none', got {cfg['correction']!r}")
    if cfg["primary_test"] not in ("permutation", "t", "wilcoxon"):
        raise ValueError("stats.primary_test must be 'permutation', 't' or 'wilcoxon', "
                         f"got {cfg['primary_test']!r}")
    sizes = cfg["posttrain_sizes"]
    if not isinstance(sizes, (list, tuple)) or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"stats.posttrain_sizes must be a list of positive integers, got {sizes!r}")
    if not isinstance(cfg["demo"], bool):
        raise ValueError(f"stats.demo must be true or false, got {cfg['demo']!r}")
    return cfg


def _check_name(kind: str, name: Any, where: str) -> str:
    if not isinstance(name, str) or not name or any(c in name for c in "#\t\n\r"):
        raise ValueError(f"{where}: {kind} must be a non-empty string without '#', tabs or "
                         f"newlines, got {name!r}")
    return name


def expand_comparisons(comparisons: list[dict], models: list[str] | None,
                       benchmarks: list[str], posttrain_sizes: list[int]
                       ) -> list[tuple[str, str | None, str, str, str]]:
    """The rows a ``stats.comparisons`` list asks for, as (benchmark, metric, model_a, model_b,
    family) tuples, in config order, without duplicates.

    ``metric`` is None where the comparison names no metrics: the default set (the benchmark's
    primary metric plus every metric with per-item scores) is only known from the metrics files,
    so run_comparisons resolves it. The metrics files a row needs are
    ``results/metrics/{model_a}/{benchmark}.json`` and ``.../{model_b}/...``.

    ``models`` (if not None) is the list of known model names: a comparison naming another model
    (including ``{arm}.post{n}`` models that are not trained) raises ValueError.
    """
    if not isinstance(comparisons, list):
        raise ValueError(f"stats.comparisons must be a list, got {type(comparisons).__name__}")
    known_models = None if models is None else set(models)
    out: list[tuple[str, str | None, str, str, str]] = []
    seen: set = set()
    for i, comp in enumerate(comparisons):
        where = f"stats.comparisons[{i}]"
        if not isinstance(comp, dict):
            raise ValueError(f"{where} must be a mapping, got {type(comp).__name__}")
        unknown = set(comp) - _COMPARISON_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} "
                             f"(known: {sorted(_COMPARISON_KEYS)})")
        for req in ("a", "b"):
            if req not in comp:
                raise ValueError(f"{where}: missing required key {req!r}")
        a = _check_name("a", comp["a"], where)
        b = _check_name("b", comp["b"], where)
        if a == b:
            raise ValueError(f"{where}: a and b are the same model {a!r}")
        family = comp.get("family")
        family = _check_name("family", DEFAULT_FAMILY if family is None else family, where)
        bench_list = comp.get("benchmarks")
        if bench_list is None:
            bench_list = list(benchmarks)
        else:
            if not isinstance(bench_list, list):
                raise ValueError(f"{where}.benchmarks must be a list")
            for bname in bench_list:
                if bname not in benchmarks:
                    raise ValueError(f"{where}.benchmarks: unknown benchmark {bname!r} "
                                     f"(known: {list(benchmarks)})")
        metrics = comp.get("metrics")
        if metrics is not None:
            if not isinstance(metrics, list) or not metrics:
                raise ValueError(f"{where}.metrics must be a non-empty list of metric names")
            for m in metrics:
                _check_name("metric", m, f"{where}.metrics")
        at_post = comp.get("at_posttrain_sizes", False)
        if not isinstance(at_post, bool):
            raise ValueError(f"{where}.at_posttrain_sizes must be true or false, got {at_post!r}")
        pairs = [(a, b)]
        if at_post:
            if not posttrain_sizes:
                raise ValueError(f"{where}: at_posttrain_sizes is true but no post-training sizes "
                                 "are configured")
            pairs += [(f"{a}.post{n}", f"{b}.post{n}") for n in posttrain_sizes]
        for ma, mb in pairs:
            for m in (ma, mb):
                if known_models is not None and m not in known_models:
                    raise ValueError(f"{where}: model {m!r} is not one of the configured models "
                                     f"{sorted(known_models)}")
            for bname in bench_list:
                for metric in (metrics if metrics is not None else [None]):
                    row = (bname, metric, ma, mb, family)
                    if row not in seen:
                        seen.add(row)
                        out.append(row)
    return out


# ----------------------------------------------------------------------------- loading
@dataclass
class MetricData:
    """One model's view of one metric: value, CI, and per-item scores (None if none)."""
    value: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    stderr: float | None = None
    n: int | None = None
    n_missing: int | None = None
    items: dict[str, float] | None = None
    null_items: set = field(default_factory=set)  # item ids whose score is null
    missing: str | None = None  # reason, when the metric is not available
    notes: list[str] = field(default_factory=list)
    n_seeds: int = 1  # training seeds behind the scores (seed averages have several)
    n_planned: int | None = None  # the completeness audit of its metrics file: units the run planned
    n_scored: int | None = None   # ... and units that got a usable score (None: unknown)

    @property
    def incomplete(self) -> bool:
        return self.n_planned is not None and self.n_scored is not None and self.n_planned != self.n_scored


def completeness_note(n_planned: int | None, n_scored: int | None) -> str | None:
    """``"scored 798 of 1,140 planned units"`` when the two counts differ, else None."""
    if n_planned is None or n_scored is None or n_planned == n_scored:
        return None
    return f"scored {n_scored:,} of {n_planned:,} planned units"


def _count(x: Any) -> int | None:
    return x if isinstance(x, int) and not isinstance(x, bool) else None


def _num(x: Any, where: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise DataError(f"{where}: expected a number or null, got {x!r}")
    x = float(x)
    return None if math.isnan(x) else x


def load_metrics_file(path: str) -> dict:
    """Read and shape-check a metrics JSON file; errors name the file and key."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    for key, typ in (("metrics", dict), ("items", dict)):
        if key in data and data[key] is not None and not isinstance(data[key], typ):
            raise DataError(f"{path}: key {key!r} must be an object")
    for name, m in (data.get("metrics") or {}).items():
        if not isinstance(m, dict):
            raise DataError(f"{path}: metrics[{name!r}] must be an object")
    return data


class _Files:
    """Caches metrics files; a missing or unreadable file becomes a reason string."""

    def __init__(self, metrics_files: dict[str, dict[str, str]]):
        self.paths = metrics_files
        self._cache: dict[tuple[str, str], dict | str] = {}

    def get(self, model: str, benchmark: str) -> dict | str:
        key = (model, benchmark)
        if key not in self._cache:
            path = (self.paths.get(model) or {}).get(benchmark)
            if path is None:
                self._cache[key] = f"no metrics file for model {model} on {benchmark}"
            elif not Path(path).exists():
                self._cache[key] = f"metrics file {path} does not exist"
            else:
                data = load_metrics_file(path)
                data["_path"] = path
                self._cache[key] = data
        return self._cache[key]


def metric_data(doc: dict | str, metric: str, model: str) -> MetricData:
    if isinstance(doc, str):
        return MetricData(missing=doc)
    path = doc.get("_path", "?")
    if doc.get("status", "ok") != "ok":
        reason = doc.get("reason") or "no reason given"
        return MetricData(missing=f"{model}: metrics status {doc.get('status')!r} ({reason})")
    m = (doc.get("metrics") or {}).get(metric)
    if m is None:
        return MetricData(missing=f"{model}: metric {metric!r} not in {path}")
    where = f"{path}: metrics[{metric!r}]"
    md = MetricData(
        value=_num(m.get("value"), f"{where}.value"),
        ci_low=_num(m.get("ci_low"), f"{where}.ci_low"),
        ci_high=_num(m.get("ci_high"), f"{where}.ci_high"),
        stderr=_num(m.get("stderr"), f"{where}.stderr"),
        n=m.get("n"), n_missing=m.get("n_missing"),
        n_seeds=int(m.get("n_seeds", doc.get("n_seeds", 1)) or 1),
        n_planned=_count(doc.get("n_planned")), n_scored=_count(doc.get("n_scored")))
    raw_items = (doc.get("items") or {}).get(metric)
    if raw_items is not None:
        if not isinstance(raw_items, dict):
            raise DataError(f"{path}: items[{metric!r}] must be an object of item_id: score")
        items = {}
        for k, v in raw_items.items():
            s = _num(v, f"{path}: items[{metric!r}][{k!r}]")
            if s is None:
                md.null_items.add(str(k))
            else:
                items[str(k)] = s
        md.items = items
    if md.value is None and not md.items:
        md.missing = f"{model}: {metric} has no value (null) in {path}"
    return md


def default_metrics(doc_a: dict | str, doc_b: dict | str) -> list[str]:
    """Primary metric plus every metric with per-item scores, from whichever files are readable."""
    out: list[str] = []
    for doc in (doc_a, doc_b):
        if isinstance(doc, dict) and doc.get("primary_metric"):
            pm = doc["primary_metric"]
            if pm not in out:
                out.append(pm)
    for doc in (doc_a, doc_b):
        if isinstance(doc, dict):
            for m, it in (doc.get("items") or {}).items():
                if it and m not in out:
                    out.append(m)
    return out


# ----------------------------------------------------------------------------- tests
def _rng(seed: int, *key: Any) -> np.random.Generator:
    """A generator that depends on the seed and the row, not on the other rows in the file."""
    return np.random.default_rng(int(stable_hash([seed, *key], length=15), 16))


def _tol(x: float) -> float:
    return 1e-9 * max(1.0, abs(x))


def paired_permutation_p(d: np.ndarray, n_permutations: int, exact_max: int,
                         rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided sign-flip permutation p-value of the mean difference.

    Exact (all 2^k sign patterns of the k non-zero differences; zero differences do not change the
    statistic, so this equals enumerating all 2^n flips) when k <= exact_max; otherwise Monte Carlo
    with p = (1 + #{|T*| >= |T|}) / (1 + B)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    obs = abs(d.sum())
    nz = d[d != 0]
    k = len(nz)
    if k == 0:
        return 1.0, "exact (all differences zero)"
    if k <= exact_max:
        signs = ((np.arange(2 ** k)[:, None] >> np.arange(k)[None, :]) & 1) * 2 - 1
        sums = np.abs(signs @ nz)
        return float(np.mean(sums >= obs - _tol(obs))), f"exact, 2^{n} sign flips"
    count = 0
    done = 0
    while done < n_permutations:
        b = min(n_permutations - done, max(1, 2_000_000 // max(k, 1)))
        signs = rng.integers(0, 2, size=(b, k)) * 2 - 1
        count += int(np.sum(np.abs(signs @ nz) >= obs - _tol(obs)))
        done += b
    return (1 + count) / (1 + n_permutations), f"Monte Carlo, {n_permutations} sign flips"


def unpaired_permutation_p(x: np.ndarray, y: np.ndarray, n_permutations: int, exact_max: int,
                           rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided label-permutation p-value of the difference of means (exact when the number of
    relabellings C(nx+ny, nx) is at most 2^exact_max)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    pooled = np.concatenate([x, y])
    nx, n = len(x), len(pooled)
    total = pooled.sum()
    obs = abs(x.mean() - y.mean())

    def stat(sum_x: np.ndarray) -> np.ndarray:
        return np.abs(sum_x / nx - (total - sum_x) / (n - nx))

    n_comb = math.comb(n, nx)
    if n_comb <= 2 ** exact_max:
        sums = np.array([pooled[list(c)].sum() for c in itertools.combinations(range(n), nx)])
        return float(np.mean(stat(sums) >= obs - _tol(obs))), f"exact, {n_comb} relabellings"
    count = 0
    for _ in range(n_permutations):
        idx = rng.permutation(n)[:nx]
        count += int(stat(np.array(pooled[idx].sum())) >= obs - _tol(obs))
    return (1 + count) / (1 + n_permutations), f"Monte Carlo, {n_permutations} relabellings"


def _boot_means(x: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """Means of n_bootstrap resamples of x, in chunks (bounded memory for large item counts)."""
    chunk = max(1, 4_000_000 // max(len(x), 1))
    out = []
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        out.append(x[rng.integers(0, len(x), size=(b, len(x)))].mean(axis=1))
    return np.concatenate(out)


def bootstrap_ci_paired(d: np.ndarray, n_bootstrap: int, level: float,
                        rng: np.random.Generator) -> tuple[float, float]:
    d = np.asarray(d, float)
    means = _boot_means(d, n_bootstrap, rng)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_ci_unpaired(x: np.ndarray, y: np.ndarray, n_bootstrap: int, level: float,
                          rng: np.random.Generator) -> tuple[float, float]:
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    mx = _boot_means(x, n_bootstrap, rng)
    my = _boot_means(y, n_bootstrap, rng)
    lo, hi = np.quantile(mx - my, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def _finite(p: Any) -> float | None:
    try:
        p = float(p)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(p) else p


def paired_t_p(a: np.ndarray, b: np.ndarray) -> tuple[float | None, str | None]:
    d = np.asarray(a, float) - np.asarray(b, float)
    if len(d) < 2:
        return None, "t-test needs at least 2 items"
    if np.all(d == d[0]):
        if d[0] == 0:
            return 1.0, "all differences zero: t-test p set to 1"
        return None, "all differences equal and non-zero: t-test undefined (zero variance)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _finite(sps.ttest_rel(a, b).pvalue), None


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> tuple[float | None, str | None]:
    d = np.asarray(a, float) - np.asarray(b, float)
    if np.all(d == 0):
        return 1.0, "all differences zero: Wilcoxon p set to 1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _finite(sps.wilcoxon(a, b).pvalue), None
        except ValueError as exc:
            return None, f"Wilcoxon failed: {exc}"


def welch_p(x: np.ndarray, y: np.ndarray) -> tuple[float | None, str | None]:
    if len(x) < 2 or len(y) < 2:
        return None, "Welch t-test needs at least 2 items per model"
    if np.var(x) == 0 and np.var(y) == 0:
        if np.mean(x) == np.mean(y):
            return 1.0, "both samples constant and equal: Welch p set to 1"
        return None, "both samples constant: Welch t-test undefined (zero variance)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _finite(sps.ttest_ind(x, y, equal_var=False).pvalue), None


def mannwhitney_p(x: np.ndarray, y: np.ndarray) -> tuple[float | None, str | None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _finite(sps.mannwhitneyu(x, y, alternative="two-sided").pvalue), None
        except ValueError as exc:
            return None, f"Mann-Whitney failed: {exc}"


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values; None entries stay None and do not count in m."""
    idx = [i for i, p in enumerate(pvalues) if p is not None]
    m = len(idx)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: pvalues[j])):
        adj = min(1.0, (m - rank) * pvalues[i])
        running = max(running, adj)
        out[i] = running
    return out


def _se(md: MetricData) -> float | None:
    if md.stderr is not None:
        return md.stderr
    if md.ci_low is not None and md.ci_high is not None:
        z = sps.norm.ppf(1 - (1 - STORED_CI_LEVEL) / 2)
        return (md.ci_high - md.ci_low) / (2 * z)
    return None


# ----------------------------------------------------------------------------- one row
def _completeness(row: dict, model_a: str, ma: MetricData, model_b: str, mb: MetricData) -> None:
    """Flag a comparison that rests on an incomplete side (its metrics file scored fewer, or other,
    units than the run planned): ``completeness`` incomplete, complete (both sides' counts agree)
    or unknown (a side's plan could not be counted), and an INCOMPLETE note naming the side and
    its counts (``completeness_note`` keeps it for the tables that build on this row)."""
    sides = [(m, md) for m, md in ((model_a, ma), (model_b, mb))]
    bad = [f"{m} {completeness_note(md.n_planned, md.n_scored)}" for m, md in sides if md.incomplete]
    if bad:
        row["completeness"] = "incomplete"
        row["completeness_note"] = "INCOMPLETE: " + "; ".join(bad)
    elif all(md.n_planned is not None and md.n_scored is not None for _, md in sides):
        row["completeness"] = "complete"
    else:
        row["completeness"] = "unknown"


def compare_one(benchmark: str, metric: str, model_a: str, model_b: str, family: str,
                ma: MetricData, mb: MetricData, cfg: dict) -> dict:
    row: dict[str, Any] = {c: None for c in COLUMNS}
    row.update(benchmark=benchmark, metric=metric, model_a=model_a, model_b=model_b,
               family=family, value_a=ma.value, value_b=mb.value,
               n_seeds_a=None if ma.missing else ma.n_seeds, n_seeds_b=None if mb.missing else mb.n_seeds)
    notes: list[str] = []
    if ma.missing or mb.missing:
        row["status"] = "missing"
        row["note"] = "; ".join(r for r in (ma.missing, mb.missing) if r)
        return row
    _completeness(row, model_a, ma, model_b, mb)
    if row.get("completeness_note"):
        notes.append(row["completeness_note"])
    level = cfg["ci_level"]
    rng = _rng(cfg["seed"], benchmark, metric, model_a, model_b)
    for name, md in ((model_a, ma), (model_b, mb)):
        if md.null_items:
            notes.append(f"{name}: {len(md.null_items)} item score(s) null, left out")

    if ma.items and mb.items:
        shared = sorted(set(ma.items) & set(mb.items))
        union = set(ma.items) | set(mb.items) | ma.null_items | mb.null_items
        if len(shared) >= 2:
            a = np.array([ma.items[k] for k in shared])
            b = np.array([mb.items[k] for k in shared])
            d = a - b
            n = len(d)
            row["n"] = n
            row["n_missing"] = len(union) - n
            if n < len(union):
                notes.append(f"paired on the {n} shared items only ({model_a} has "
                             f"{len(ma.items)}, {model_b} has {len(mb.items)})")
            row["diff"] = float(d.mean())
            row["ci_low"], row["ci_high"] = bootstrap_ci_paired(d, cfg["n_bootstrap"], level, rng)
            row["p_t"], n1 = paired_t_p(a, b)
            row["p_wilcoxon"], n2 = wilcoxon_p(a, b)
            row["p_permutation"], how = paired_permutation_p(
                d, cfg["n_permutations"], cfg["permutation_exact_max"], rng)
            notes += [x for x in (n1, n2) if x]
            primary = cfg["primary_test"]
            row["test"] = {"permutation": f"paired permutation ({how})",
                           "t": "paired t-test",
                           "wilcoxon": "paired Wilcoxon signed-rank"}[primary]
        else:
            x = np.array(list(ma.items.values()))
            y = np.array(list(mb.items.values()))
            row["n"] = len(x) + len(y)
            row["n_missing"] = len(ma.null_items) + len(mb.null_items)
            notes.append(f"items do not align ({len(shared)} shared ids): unpaired tests on "
                         f"{len(x)} vs {len(y)} items (p_t = Welch t-test, p_wilcoxon = "
                         "Mann-Whitney U, p_permutation = label permutation)")
            row["diff"] = float(x.mean() - y.mean())
            row["ci_low"], row["ci_high"] = bootstrap_ci_unpaired(x, y, cfg["n_bootstrap"], level, rng)
            row["p_t"], n1 = welch_p(x, y)
            row["p_wilcoxon"], n2 = mannwhitney_p(x, y)
            row["p_permutation"], how = unpaired_permutation_p(
                x, y, cfg["n_permutations"], cfg["permutation_exact_max"], rng)
            notes += [x_ for x_ in (n1, n2) if x_]
            primary = cfg["primary_test"]
            row["test"] = {"permutation": f"unpaired permutation ({how})",
                           "t": "unpaired Welch t-test",
                           "wilcoxon": "unpaired Mann-Whitney U"}[primary]
        row["p_value"] = {"permutation": row["p_permutation"], "t": row["p_t"],
                          "wilcoxon": row["p_wilcoxon"]}[cfg["primary_test"]]
        if ma.value is not None and mb.value is not None:
            vd = ma.value - mb.value
            if abs(vd - row["diff"]) > 1e-9 * max(1.0, abs(vd)):
                notes.append(f"diff is the mean per-item difference on the tested items; "
                             f"value_a - value_b = {vd:.6g}")
    else:
        # No per-item scores on at least one side: z-test from the intervals.
        without = [name for name, md in ((model_a, ma), (model_b, mb)) if not md.items]
        row["test"] = "z-test from CIs/stderrs (no per-item scores)"
        notes.append(f"no per-item scores for {', '.join(without)}: z-test from stderr or the "
                     f"stored {STORED_CI_LEVEL:.0%} CIs, assuming normality")
        if ma.value is None or mb.value is None:
            row["status"] = "missing"
            row["note"] = "; ".join(notes + [f"value of {m} is null" for m, md in
                                             ((model_a, ma), (model_b, mb)) if md.value is None])
            return row
        row["diff"] = ma.value - mb.value
        ns = [md.n for md in (ma, mb)]
        row["n"] = min(ns) if all(isinstance(v, int) for v in ns) else None
        nm = [md.n_missing for md in (ma, mb)]
        row["n_missing"] = sum(nm) if all(isinstance(v, int) for v in nm) else None
        se_a, se_b = _se(ma), _se(mb)
        if se_a is None or se_b is None:
            row["status"] = "no_test"
            notes.append("no CI or stderr for " + ", ".join(
                m for m, s in ((model_a, se_a), (model_b, se_b)) if s is None))
            row["note"] = "; ".join(notes)
            return row
        se = math.hypot(se_a, se_b)
        z = sps.norm.ppf(1 - (1 - level) / 2)
        row["ci_low"], row["ci_high"] = row["diff"] - z * se, row["diff"] + z * se
        if se == 0:
            row["p_value"] = 1.0 if row["diff"] == 0 else None
            notes.append("zero standard error")
        else:
            row["p_value"] = float(2 * sps.norm.sf(abs(row["diff"]) / se))
    row["status"] = "ok" if row["p_value"] is not None else "no_test"
    if row["p_value"] is None:
        notes.append(f"primary test ({cfg['primary_test']}) gave no p-value")
    row["note"] = "; ".join(notes) or None
    return row


# ----------------------------------------------------------------------------- driver
def _flag_gate(row: dict, *docs: dict | str) -> None:
    """Mark a row of a judged benchmark with its judge gate's verdict (metrics files' judge_gate);
    a judge that did not pass puts its note first: such a difference is never silently trusted."""
    gates = [d["judge_gate"] for d in docs if isinstance(d, dict) and isinstance(d.get("judge_gate"), dict)]
    if not gates:
        return
    worst = next((g for g in gates if g.get("status") != "passed"), gates[0])
    row["judge_gate"] = worst.get("status")
    if worst.get("status") != "passed":
        row["note"] = "; ".join(x for x in (worst.get("note") or f"judge gate {worst.get('status')}", row["note"]) if x)


def compute_comparisons(comparisons: list[dict], metrics_files: dict[str, dict[str, str]],
                        stats_cfg: dict) -> list[dict]:
    """All comparison rows (dicts keyed by COLUMNS), Holm-corrected within families."""
    cfg = resolve_stats_cfg(stats_cfg)
    benchmarks: list[str] = []
    for per_model in metrics_files.values():
        for bname in per_model:
            if bname not in benchmarks:
                benchmarks.append(bname)
    expanded = expand_comparisons(comparisons, None, benchmarks, list(cfg["posttrain_sizes"]))
    files = _Files(metrics_files)
    rows: list[dict] = []
    seen: set = set()
    for bname, metric, a, b, family in expanded:
        doc_a, doc_b = files.get(a, bname), files.get(b, bname)
        metric_list = [metric] if metric is not None else default_metrics(doc_a, doc_b)
        if not metric_list:
            row = {c: None for c in COLUMNS}
            reasons = [d for d in (doc_a, doc_b) if isinstance(d, str)]
            row.update(benchmark=bname, metric="", model_a=a, model_b=b, family=family,
                       status="missing",
                       note="; ".join(reasons) or "no primary metric and no per-item metrics")
            rows.append(row)
            continue
        for m in metric_list:
            key = (bname, m, a, b, family)
            if key in seen:
                continue
            seen.add(key)
            row = compare_one(bname, m, a, b, family, metric_data(doc_a, m, a), metric_data(doc_b, m, b), cfg)
            _flag_gate(row, doc_a, doc_b)
            rows.append(row)
    families: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        families.setdefault(r["family"], []).append(i)
    for fam, idx in families.items():
        if cfg["correction"] == "holm":
            adj = holm([rows[i]["p_value"] for i in idx])
            for i, p in zip(idx, adj):
                rows[i]["p_holm"] = p
        decisive = "p_holm" if cfg["correction"] == "holm" else "p_value"
        for i in idx:
            p = rows[i][decisive]
            rows[i]["significant"] = None if p is None else bool(p < cfg["alpha"])
    if cfg["correction"] == "none":
        for r in rows:
            if r["status"] == "ok":
                r["note"] = "; ".join(x for x in (r["note"], "no multiple-comparison correction") if x)
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return "" if math.isnan(v) else format(v, ".10g")
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    # free text: no tabs/newlines (TSV) and no '#' (readers use comment="#")
    return str(v).replace("\t", " ").replace("\r", " ").replace("\n", " ").replace("#", "no.")


def format_tsv(rows: list[dict], columns: list[str], banner: str | None = None) -> str:
    lines = [banner] if banner else []
    lines.append("\t".join(columns))
    lines += ["\t".join(_fmt(r.get(c)) for c in columns) for r in rows]
    return "\n".join(lines) + "\n"


def run_comparisons(comparisons: list[dict], metrics_files: dict[str, dict[str, str]],
                    stats_cfg: dict, out: str) -> list[dict]:
    """Write results/stats/comparisons.tsv (+ its provenance sidecar); returns the rows.

    Read it with ``pandas.read_csv(out, sep="\\t", comment="#")`` (demo runs start with a
    ``# DEMO`` line)."""
    cfg = resolve_stats_cfg(stats_cfg)
    rows = compute_comparisons(comparisons, metrics_files, stats_cfg)
    if cfg["demo"]:
        for r in rows:
            r["note"] = "; ".join(x for x in ("DEMO: no evidence", r["note"]) if x)
    atomic_write_text(out, format_tsv(rows, COLUMNS, DEMO_BANNER if cfg["demo"] else None))
    from ..workflow.provenance import write_sidecar

    inputs = sorted({p for per in metrics_files.values() for p in per.values() if Path(p).exists()})
    write_sidecar(out, inputs, {"comparisons": comparisons, "stats": stats_cfg}, rule="stats")
    return rows
