"""Capability benchmarks through lm-evaluation-harness (HellaSwag by default; any lm-eval task).

bench_cfg keys:
    task          (str, required)  lm-eval task name, e.g. "hellaswag"
    local_file    (str, optional)  a JSONL file in the HellaSwag format (activity_label, ctx_a, ctx_b,
                                   endings[4], label as a string). Used instead of the task's dataset
                                   id, so the benchmark runs offline. Only for HellaSwag-format tasks.
    limit         (int|float, optional) lm-eval's limit (number, or fraction < 1, of documents)
    num_fewshot   (int, optional)  default: the task's own (0 for HellaSwag)
    batch_size    (int or "auto", default 8)
    bootstrap_iters (int, default 1000) for stderr of non-mean aggregations
    dtype/device  (optional)       passed to doctune.models.load_model

The model is built with `doctune.models.load_model(spec, merge_all=True)` (every adapter in the
spec merged in order) and handed to lm-eval as an `HFLM` instance. lm-eval's response cache is
keyed by request only, so the cache lives at `{cache_dir}/{model name}-{spec hash}/` and is never
shared between models.

When the task's data cannot be had right now (offline and not cached without a local file, gated,
hub unreachable: doctune.workflow.hub.hub_problem) or lm-eval is not installed, the output
says `"status": "missing"` with the reason and the function returns normally, so the rest of the
pipeline goes on. A task name the installed lm-eval does not know (``tasks.UnknownTask``, with a
did-you-mean; preflight reports it first) and data that cannot be read as the task asks (a wrong
split or config: ``DatasetError``) fail the job, in one line.

Output JSON:
    {"status": "ok"|"missing", "reason": str|null, "task": str, "model": str,
     "results": {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr"} (as lm-eval reports; null if absent),
     "n": int|null, "per_item": {"<doc index>": {"acc": 0|1, "acc_norm": 0|1}} or null,
     "num_fewshot": int|null, "limit": ..., "local_file": str|null, "lm_eval_version": str|null}
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ....io import atomic_write_json, stable_hash
from ..base import BenchmarkKind, Dataset
from ..common import bootstrap_ci, item_sort, metric

log = logging.getLogger(__name__)

RESULT_KEYS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")
HELLASWAG_FIELDS = ("activity_label", "ctx_a", "ctx_b", "endings", "label")


def _lm_eval_version() -> str | None:
    from .tasks import lm_eval_version

    return lm_eval_version()


def _check_hellaswag_file(path: Path) -> int:
    """Validate a HellaSwag-format JSONL file; returns the number of documents."""
    from ....io import DataError, iter_jsonl

    n = 0
    with path.open(encoding="utf-8") as fh:
        lines = fh.readlines()
    for i, row in enumerate(iter_jsonl(path), start=1):
        n += 1
        # iter_jsonl skips blank lines; find the real line number for the message
        missing = [k for k in HELLASWAG_FIELDS if k not in row]
        if missing or not isinstance(row.get("endings"), list) or not str(row.get("label", "")).isdigit() \
                or not int(row["label"]) < len(row.get("endings") or []):
            lineno = [k for k, line in enumerate(lines, start=1) if line.strip()][i - 1]
            why = f"missing {missing}" if missing else "endings must be a list and label an index into it"
            raise DataError(f"{path}:{lineno}: not a HellaSwag-format document ({why})")
    if n == 0:
        raise DataError(f"{path}: no documents")
    return n


def _task_config(task: str, local_file: Path) -> dict:
    from lm_eval.tasks.hellaswag import utils as hs_utils

    return {
        "task": f"{task}_local",
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": {"validation": str(local_file)}},
        "output_type": "multiple_choice",
        "validation_split": "validation",
        "process_docs": hs_utils.process_docs,
        "doc_to_text": "{{query}}",
        "doc_to_target": "{{label}}",
        "doc_to_choice": "choices",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0, "local_file": str(local_file)},
    }


def _num(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _write(out: str, task: str, spec: dict, bench_cfg: dict, local_file: Path | None, **fields: Any) -> dict:
    doc = {
        "status": "ok", "reason": None, "task": task, "model": spec.get("name"),
        "results": {k: None for k in RESULT_KEYS}, "n": None, "per_item": None,
        "num_fewshot": bench_cfg.get("num_fewshot"), "limit": bench_cfg.get("limit"),
        "local_file": str(local_file) if local_file else None, "lm_eval_version": _lm_eval_version(),
    }
    doc.update(fields)
    atomic_write_json(out, doc)
    return doc


def run_lm_eval(spec: dict, bench_cfg: dict, out: str, cache_dir: str | None = None, *,
                model=None, tokenizer=None, shared: dict | None = None) -> dict:
    """Run one lm-eval task for one model; write and return the JSON described above.

    `model`/`tokenizer` may be given to reuse an already loaded pair (tests); `shared` (a dict
    kept between calls) holds the pair loaded here, so several tasks of one job load it once."""
    task = bench_cfg.get("task")
    if not task or not isinstance(task, str):
        raise ValueError("lm_eval benchmark config needs 'task' (an lm-eval task name)")
    local_file = None
    if bench_cfg.get("local_file"):
        local_file = Path(bench_cfg["local_file"]).expanduser().resolve()  # lm-eval resolves against cwd
        if not local_file.is_file():
            raise FileNotFoundError(f"lm_eval benchmark {task!r}: local_file {bench_cfg['local_file']!r} "
                                    f"does not exist (resolved to {local_file})")
        _check_hellaswag_file(local_file)

    try:
        log.info("lm-eval: importing lm-eval")
        import lm_eval
        from lm_eval.tasks import get_task_dict
    except ImportError as exc:
        return _write(out, task, spec, bench_cfg, local_file, status="missing",
                      reason=f"lm-eval is not installed ({exc})")

    # 1. Build the task (this is where the dataset is fetched). A task name lm-eval does not know
    #    stops the job; a dataset the hub cannot give right now (offline and not cached, gated,
    #    unreachable) = data missing; any other failure (a wrong split or config) fails the job.
    #    The task index covers the needed task only (the full one costs 10 s to minutes).
    from .tasks import UnknownTask, task_manager, task_problem

    problem = task_problem(task)
    if problem:
        raise UnknownTask(f"config key 'task': {problem}")
    task_spec: Any = _task_config(task, local_file) if local_file else task
    tm = task_manager([task_spec])
    log.info("lm-eval: loading task %s%s", task, f" from {local_file}" if local_file else "")
    try:
        if hasattr(tm, "load"):
            loaded = tm.load([task_spec])
            task_dict, groups = dict(loaded["tasks"]), loaded.get("groups") or {}
        else:  # older lm-eval
            task_dict, groups = get_task_dict([task_spec], tm), {}
    except Exception as exc:  # noqa: BLE001 - sorted by dataset_failure: missing, or the job fails
        from ....io import DataUnavailable
        from ....workflow.hub import dataset_failure

        err = dataset_failure(exc, f"the data of lm-eval task {task!r}"
                                   + (f" (local_file {local_file})" if local_file else ""))
        if not isinstance(err, DataUnavailable):
            raise err from exc
        reason = f"could not load lm-eval task {task!r}: {err}"
        if not local_file:
            reason += " (set local_file to a HellaSwag-format JSONL file to run offline)"
        log.warning("%s", reason)
        return _write(out, task, spec, bench_cfg, local_file, status="missing", reason=reason[:2000])
    if groups or len(task_dict) != 1:
        raise ValueError(f"lm_eval benchmark {task!r} is a group of {len(task_dict)} tasks; "
                         "name one task per benchmark entry")
    task_name = next(iter(task_dict))

    # 2. Evaluate: errors here are real failures and raise.
    from lm_eval.models.huggingface import HFLM

    mkey = (str(bench_cfg.get("device")), str(bench_cfg.get("dtype")))
    if model is None and shared is not None and mkey in shared:
        model, tokenizer = shared[mkey]
    if model is None:
        from ....models import load_model

        log.info("lm-eval: loading model %s", spec.get("name"))
        model, tokenizer = load_model(spec, device=bench_cfg.get("device"), dtype=bench_cfg.get("dtype"),
                                      merge_all=True)
        if shared is not None:
            shared[mkey] = (model, tokenizer)
    batch_size = bench_cfg.get("batch_size") or 8
    if not (batch_size == "auto" or (isinstance(batch_size, int) and batch_size >= 1)):
        raise ValueError(f"lm_eval benchmark {task!r}: batch_size must be a positive integer or 'auto', "
                         f"got {batch_size!r}")
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    use_cache = None
    if cache_dir:
        cdir = Path(cache_dir) / f"{spec.get('name', 'model')}-{stable_hash(spec)}"
        cdir.mkdir(parents=True, exist_ok=True)
        use_cache = str(cdir / f"{task_name}")
    log.info("lm-eval: evaluating %s on %s (limit %s)", spec.get("name"), task_name, bench_cfg.get("limit"))
    res = lm_eval.simple_evaluate(
        model=lm, tasks=[task_dict[task_name]],
        num_fewshot=bench_cfg.get("num_fewshot"), limit=bench_cfg.get("limit"),
        use_cache=use_cache, log_samples=True, bootstrap_iters=int(bench_cfg.get("bootstrap_iters", 1000)),
        task_manager=tm,
    )
    if res is None:  # non-zero rank in a distributed run
        raise RuntimeError("lm_eval.simple_evaluate returned nothing")
    r = res["results"].get(task_name, {})
    results = {k: _num(r.get(f"{k.replace('_stderr', '')}_stderr,none" if k.endswith("_stderr") else f"{k},none"))
               for k in RESULT_KEYS}
    n = None
    nsamp = (res.get("n-samples") or {}).get(task_name) or {}
    if "effective" in nsamp:
        n = int(nsamp["effective"])
    per_item = None
    samples = (res.get("samples") or {}).get(task_name)
    if samples:
        per_item = {}
        for s in samples:
            vals = {k: int(s[k]) for k in ("acc", "acc_norm") if _num(s.get(k)) is not None}
            if vals:
                per_item[str(s["doc_id"])] = vals
        if n is None:
            n = len(samples)
    return _write(out, task, spec, bench_cfg, local_file, results=results, n=n, per_item=per_item,
                  lm_task=task_name)


# --------------------------------------------------------------------------------------------
# The kind
# --------------------------------------------------------------------------------------------

METRIC_NAMES = ("acc", "acc_norm")


def _per_item_for(per_item: Any, name: str) -> dict[str, float] | None:
    if not isinstance(per_item, dict) or not per_item:
        return None
    if isinstance(per_item.get(name), dict):                         # {metric: {item: value}}
        return {str(k): float(v) for k, v in per_item[name].items() if v is not None}
    if all(isinstance(v, dict) for v in per_item.values()):         # {item: {metric: value}}
        out = {str(k): float(v[name]) for k, v in per_item.items() if v.get(name) is not None}
        return out or None
    if name == "acc" and all(isinstance(v, (int, float)) for v in per_item.values()):  # {item: acc} (old files)
        return {str(k): float(v) for k, v in per_item.items()}
    return None


def lm_eval_metrics(data: dict, n_bootstrap: int, seed: int) -> tuple[dict, dict, str | None]:
    """Returns (metrics, items, reason if missing)."""
    if data.get("status") == "missing":
        reason = data.get("reason") or "lm-eval did not run"
        return {m: metric(None) for m in METRIC_NAMES}, {}, reason
    res = data.get("results") or {}
    n = data.get("n")
    metrics, items = {}, {}
    for name in METRIC_NAMES:
        per = _per_item_for(data.get("per_item"), name)
        value = res.get(name)
        if per:
            vals = list(per.values())
            value = float(np.mean(vals)) if value is None else float(value)
            metrics[name] = metric(value, bootstrap_ci(vals, n_bootstrap, seed), len(vals), 0)
            items[name] = {k: per[k] for k in item_sort(per)}
        elif value is not None:
            se = res.get(f"{name}_stderr")
            ci = (value - 1.96 * se, value + 1.96 * se) if isinstance(se, (int, float)) and math.isfinite(se) \
                else (None, None)
            metrics[name] = metric(float(value), ci, int(n or 0), 0)
        else:
            metrics[name] = metric(None, n=0, n_missing=int(n or 0))
    if all(m["value"] is None for m in metrics.values()):
        return metrics, items, "lm-eval results hold neither acc nor acc_norm"
    return metrics, items, None


def primary_of(metrics: dict) -> str:
    """acc_norm, the field's convention for HellaSwag-style tasks, when the task reports it; else acc."""
    return "acc_norm" if metrics.get("acc_norm", {}).get("value") is not None else "acc"


class LMEvalKind(BenchmarkKind):
    name = "lm_eval"
    stage = "lm_eval"
    primary_metric = "acc_norm"     # when the task has no acc_norm, acc (see primary_of)
    metric_names = METRIC_NAMES
    description = "any lm-eval task (HellaSwag by default) through lm-eval's Python API"
    display_name = "lm-eval"
    metric_labels = {"acc": "accuracy", "acc_norm": "length-normalized accuracy"}

    def preflight_warnings(self, bench_cfg: dict, env: dict) -> list[tuple[str, str]]:
        offline = any(str(env.get(k, "")).strip().lower() in ("1", "true", "yes", "on")
                      for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
        if bench_cfg.get("local_file") or not offline:
            return []
        return [("local_file", f"not set: lm-eval task {bench_cfg.get('task')!r} reads its data from the hub, which "
                               "is offline here; unless lm-eval's dataset is cached it is reported missing")]

    def load(self, bench_cfg: dict) -> Dataset:
        raise NotImplementedError("lm_eval benchmarks are loaded by lm-eval itself")

    def item_texts(self, bench_cfg: dict) -> list[tuple[str, str]]:
        """The contamination guard's texts: each document's context and its gold ending, from
        ``local_file``, else from lm-eval's own task (read from the datasets cache when offline;
        an uncached hub dataset raises, and the guard reports it)."""
        if bench_cfg.get("local_file"):
            from ....io import iter_jsonl

            out = []
            for i, d in enumerate(iter_jsonl(bench_cfg["local_file"]), start=1):
                ctx = d.get("ctx") or " ".join(str(d.get(k) or "") for k in ("ctx_a", "ctx_b"))
                ends, label = d.get("endings") or [], d.get("label")
                gold = ends[int(label)] if isinstance(ends, list) and str(label).strip().isdigit() and int(label) < len(ends) else ""
                out.append((str(d.get("ind", i)), f"{ctx} {gold}".strip()))
            return out
        from lm_eval.tasks import TaskManager, get_task_dict

        task = get_task_dict([bench_cfg["task"]], TaskManager())[bench_cfg["task"]]
        docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
        return [(str(i), str(task.doc_to_text(d))) for i, d in enumerate(docs)]

    def check(self, bench_cfg: dict) -> list[str]:
        problems = []
        task = bench_cfg.get("task")
        if not task:
            problems.append("config key 'task': an lm_eval benchmark needs an lm-eval task name")
        elif _lm_eval_version() is not None:   # without lm-eval the job reports the benchmark missing
            from .tasks import task_problem

            problem = task_problem(str(task))
            if problem:
                problems.append(f"config key 'task': {problem}")
        lf = bench_cfg.get("local_file")
        if lf:
            p = Path(lf)
            if not p.is_file():
                problems.append(f"config key 'local_file': {lf} does not exist")
            else:
                try:
                    _check_hellaswag_file(p)
                except Exception as exc:  # noqa: BLE001 - DataError names file and line
                    problems.append(str(exc))
        return problems

    def run(self, spec: dict, bench_cfg: dict, out: str, **kw: Any) -> Any:
        return run_lm_eval(spec, bench_cfg, out, kw.get("cache_dir"), model=kw.get("model"),
                           tokenizer=kw.get("tokenizer"), shared=kw.get("shared"))

    def read_scores(self, path: str) -> Any:
        from ....io import DataError, read_json

        p = Path(path)
        if not p.exists():
            raise DataError(f"scores file {p} does not exist")
        data = read_json(p)
        if not isinstance(data, dict):
            raise DataError(f"{p}: expected a JSON object from lm-eval")
        return data

    def metrics(self, scores: dict, bench_cfg: dict, n_bootstrap: int, seed: int) -> tuple[dict, dict, dict]:
        metrics, items, reason = lm_eval_metrics(scores, n_bootstrap, seed)
        extra = {"primary_metric": primary_of(metrics)}
        if reason:
            extra["reason"] = reason
        return metrics, items, extra

    def plan(self, bench_cfg: dict, scores: Any, epochs: int = 1) -> dict:
        """The task's documents after ``limit``: lm-eval's own count of them (``n``, its effective
        n-samples) when it ran, else those of ``local_file`` cut at ``limit`` (None without either)."""
        out = {"n_planned": None, "unit": "documents", "limit": bench_cfg.get("limit")}
        if isinstance(scores, dict) and scores.get("status") == "ok" and isinstance(scores.get("n"), int) \
                and not isinstance(scores.get("n"), bool):
            return dict(out, n_planned=int(scores["n"]), basis="lm-eval's documents after limit")
        if bench_cfg.get("local_file") and Path(bench_cfg["local_file"]).is_file():
            n = _check_hellaswag_file(Path(bench_cfg["local_file"]))
            limit = bench_cfg.get("limit")
            if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit > 0:
                n = min(n, int(math.ceil(n * limit)) if limit < 1 else int(limit))
            return dict(out, n_planned=n, basis="local_file documents after limit")
        return out

    def scored_units(self, scores: Any, bench_cfg: dict) -> int | None:
        """Documents with a per-document acc or acc_norm; without per-document scores, lm-eval's
        count behind its aggregate (0 when the task did not run)."""
        if not isinstance(scores, dict):
            return None
        if scores.get("status") != "ok":
            return 0
        per = scores.get("per_item")
        if isinstance(per, dict) and per:
            ids = set()
            for name in METRIC_NAMES:
                ids |= set(_per_item_for(per, name) or {})
            return len(ids)
        res = scores.get("results") or {}
        if all(res.get(k) is None for k in METRIC_NAMES):
            return 0
        n = scores.get("n")
        return int(n) if isinstance(n, int) and not isinstance(n, bool) else None


KIND = LMEvalKind()
