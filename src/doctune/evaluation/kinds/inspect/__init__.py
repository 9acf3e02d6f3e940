"""Any Inspect task (inspect_evals/anima, inspect_evals/moru, inspect_evals/tac, or any registered
task) as a benchmark of our models: benchmark kind ``inspect``, stage ``inspect``.

bench_cfg keys:
    task            (str, required)  a registered Inspect task, e.g. "inspect_evals/moru"
    task_args       (dict)           the task's arguments (dataset ids, revisions, local files, ...)
    grader_models   (list)           models that grade (Inspect model names such as
                                     "google/gemini-2.5-flash-lite", or {model, args, outputs}:
                                     ``outputs`` is a list of canned replies cycled by Inspect's
                                     ``mockllm/model``, for offline tests). Passed as the task's
                                     ``grader_models`` argument when it has one, and as the
                                     ``grader`` model role.
    needs_grader    (bool, true)     false for tasks scored by program (TAC); true refuses to
                                     start without grader_models, because Inspect would otherwise
                                     let the evaluated model grade itself
    epochs, max_items, generation    as for other benchmarks (epochs: the task's own by default;
                                     generation: max_new_tokens -> max_tokens, temperature, top_p,
                                     seed; evaluation.generation then the benchmark's overrides)
    primary_metric                   default: the log's headline metric

The evaluated model is served by the ``doctune`` provider (``provider.py`` in this folder):
base, arm or post-trained model (base + LoRA adapter, not merged), loaded from its spec.

Output: the Inspect log ``results/inspect/{model}/{benchmark}.eval`` and
``results/inspect/{model}/{benchmark}.json``::

    {"status": "ok"|"missing", "reason", "task", "task_args", "model", "log", "graders",
     "inspect_ai_version", "inspect_evals_version", "epochs", "headline",
     "n_samples",                         # the samples Inspect planned (after limit); x epochs = the plan
     "metrics": {name: value},            # the task's own metrics, as Inspect computed them
     "samples": [{"id", "epoch", "scores": {scorer: value}}],
     "sample_errors": [{"id", "epoch", "error"}],   # samples Inspect could not score (left out)
     "chat_template_renders_tools": bool}           # False: the model cannot call tools

A dataset that cannot be had (gated, offline, missing local file) gives ``status: missing`` with
the reason, an Inspect log with status "error" saying so, and the rest of the run goes on.

Metrics (rule ``metrics``): every metric Inspect reported, with its value exactly as Inspect
computed it. Per-sample score values (dict keys, or the scorer's name for a scalar) are averaged
over epochs per sample id; when the mean over ids of one of them reproduces an Inspect metric,
that metric gets those per-id scores (paired comparisons on sample ids) and a bootstrap CI.
Sample values with no such metric are reported as ``sample:<key>``.
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from ...inspect_log import write_error_log
from ....io import DataError, atomic_write_json, read_json
from ..base import BenchmarkKind
from ..common import bootstrap_ci, item_sort, mean, metric

log = logging.getLogger(__name__)

GATED_HINTS = ("gated", "401", "403", "Unauthorized", "restricted", "awaiting a review")
PATH_ARG_HINTS = ("local_", "_path", "_file", "_dir")


# --------------------------------------------------------------------------------------------
# Config helpers
# --------------------------------------------------------------------------------------------

def _graders(bench_cfg: dict) -> list:
    return list(bench_cfg.get("grader_models") or [])


def _grader_name(g: Any) -> str:
    return g if isinstance(g, str) else str((g or {}).get("model"))


def _local_args(bench_cfg: dict) -> dict[str, str]:
    """Task arguments that name local files or folders (by name or by a leading ./, ../ or /)."""
    out = {}
    for k, v in (bench_cfg.get("task_args") or {}).items():
        if isinstance(v, str) and (any(h in k for h in PATH_ARG_HINTS) or v.startswith(("/", "./", "../"))):
            out[k] = v
        elif isinstance(v, str) and Path(v).exists():
            out[k] = v
    return out


def check_config(bench_cfg: dict, name: str = "benchmark") -> list[str]:
    """Problems with an inspect benchmark's config, without importing Inspect."""
    where = f"benchmarks.{name}"
    errs = []
    task = bench_cfg.get("task")
    if not isinstance(task, str) or not task.strip():
        errs.append(f"config key '{where}.task': an inspect benchmark names an Inspect task, "
                    f"e.g. inspect_evals/moru")
    if bench_cfg.get("needs_grader", True) and not _graders(bench_cfg):
        errs.append(f"config key '{where}.grader_models': task {task!r} needs a grader model and none is "
                    f"named (Inspect would let the evaluated model grade itself); name one, or set "
                    f"needs_grader: false for a task scored by program")
    for i, g in enumerate(_graders(bench_cfg)):
        if isinstance(g, dict) and not isinstance(g.get("model"), str):
            errs.append(f"config key '{where}.grader_models[{i}]': needs 'model' (an Inspect model name)")
        elif isinstance(g, dict) and g.get("outputs") is not None and not str(g.get("model")).startswith("mockllm/"):
            errs.append(f"config key '{where}.grader_models[{i}].outputs': canned replies need model mockllm/model")
    ta = bench_cfg.get("task_args") or {}
    if not isinstance(ta, dict):
        errs.append(f"config key '{where}.task_args': expected a mapping, got {type(ta).__name__}")
    for k, v in _local_args(bench_cfg).items():
        if not Path(v).exists():
            errs.append(f"config key '{where}.task_args.{k}': {v} does not exist")
    return errs


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("inspect_ai", "inspect_evals"):
        try:
            out[f"{pkg}_version"] = version(pkg.replace("_", "-"))
        except PackageNotFoundError:
            out[f"{pkg}_version"] = None
    return out


def _canned(outputs: list[str]):
    """A mockllm custom_outputs callable cycling through canned replies (with usage set, so
    mockllm does not download a tokenizer to count tokens)."""
    from inspect_ai.model import ModelOutput, ModelUsage

    state = {"i": 0}

    def reply(input, tools, tool_choice, config):  # noqa: A002 - Inspect's signature
        text = str(outputs[state["i"] % len(outputs)])
        state["i"] += 1
        out = ModelOutput.from_content("mockllm/model", text)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        return out
    return reply


def grader_models(bench_cfg: dict) -> list:
    """Inspect Model objects (or names) for the configured graders."""
    from inspect_ai.model import get_model

    out = []
    for g in _graders(bench_cfg):
        if isinstance(g, str):
            out.append(get_model(g, role="grader"))
            continue
        args = dict(g.get("args") or {})
        if g.get("outputs") is not None:
            args["custom_outputs"] = _canned(list(g["outputs"]))
        out.append(get_model(g["model"], role="grader", memoize=False, **args))
    return out


def resolve_task(task_name: str):
    """The registered task function (loading installed packages' entry points); ValueError naming
    the task when there is none."""
    from inspect_ai._util.registry import registry_info, registry_lookup

    fn = registry_lookup("task", task_name)
    if fn is None:
        raise ValueError(f"Inspect task {task_name!r} is not registered (is its package installed? "
                         f"e.g. inspect_evals/anima, inspect_evals/moru, inspect_evals/tac)")
    return fn, set(registry_info(fn).metadata.get("params") or [])


def _gen_kwargs(gen: dict) -> dict:
    out = {}
    for ours, theirs in (("max_new_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("seed", "seed")):
        if gen.get(ours) is not None:
            out[theirs] = gen[ours]
    return out


def _dataset_reason(task: str, exc: BaseException) -> str:
    msg = f"{type(exc).__name__}: {exc}"
    reason = f"could not build Inspect task {task!r} (its dataset could not be had): {msg}"
    if any(h.lower() in msg.lower() for h in GATED_HINTS) or "tac" in task.split("/")[-1]:
        reason += (". If the dataset is gated on the HuggingFace hub (TAC is), accept its terms on the hub, "
                   "log in (HF_TOKEN), or give a local copy in task_args (TAC: local_scenarios).")
    elif "offline" in msg.lower() or "connect" in msg.lower() or "LocalEntryNotFound" in msg:
        reason += ". Offline: give a local copy of the dataset in task_args."
    return reason[:4000]


def _value(v: Any) -> Any:
    """A sample score value as JSON (NaN -> None)."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_value(x) for x in v]
    return v


def run_inspect_task(spec: dict, bench_cfg: dict, out: str, log_file: str, *, model_name: str | None = None,
                     gen: dict | None = None, model=None, log_dir: str | None = None) -> dict:
    """Run the configured Inspect task on one model; write the .eval log and the JSON summary.

    ``model`` may be an Inspect Model to use instead of serving ``spec`` (tests)."""
    errs = check_config(bench_cfg, bench_cfg.get("_name", "benchmark"))
    if errs:
        raise ValueError("; ".join(errs))
    task_name = bench_cfg["task"]
    name = model_name or spec.get("name") or "model"
    task_args = dict(bench_cfg.get("task_args") or {})
    doc: dict[str, Any] = {"status": "ok", "reason": None, "task": task_name, "task_args": task_args,
                           "model": name, "log": str(log_file),
                           "graders": [_grader_name(g) for g in _graders(bench_cfg)], **_versions(),
                           "epochs": None, "headline": None, "metrics": {}, "samples": [], "sample_errors": []}
    if isinstance(spec, dict) and spec.get("missing_data"):  # a model whose training data was unavailable
        reason = f"model {name} is missing: {spec.get('reason') or 'data unavailable'}"
        doc.update(status="missing", reason=reason)
        write_error_log(log_file, task_name, f"doctune/{name}", reason)
        atomic_write_json(out, doc)
        return doc
    try:
        import inspect_ai  # noqa: F401
    except ImportError as exc:
        doc.update(status="missing", reason=f"inspect-ai is not installed ({exc}): pip install -r requirements-inspect.txt")
        atomic_write_json(out, doc)
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        return doc

    from inspect_ai import Task, eval as inspect_eval
    from inspect_ai._eval.registry import task_create

    _, params = resolve_task(task_name)
    unknown = sorted(set(task_args) - params)
    if unknown:
        raise ValueError(f"benchmark {bench_cfg.get('_name', task_name)!r}: task {task_name!r} has no "
                         f"argument(s) {unknown} (its arguments: {sorted(params)})")
    graders = grader_models(bench_cfg)
    grader_params = {p for p in params if "grader" in p or p in ("judge", "judge_model", "scorer_model")}
    if grader_params and not bench_cfg.get("needs_grader", True):
        raise ValueError(f"benchmark {bench_cfg.get('_name', task_name)!r}: task {task_name!r} takes "
                         f"{sorted(grader_params)}: it is graded by a model, so needs_grader: false is wrong; "
                         f"name grader_models")
    call_args = dict(task_args)
    if "grader_models" in params and graders:
        call_args.setdefault("grader_models", graders)
    # 1. Build the task (this is where datasets are fetched): data that cannot be had right now
    # (offline and not cached, gated, unreachable) = missing; any other failure stops the job.
    try:
        task = task_create(task_name, **call_args)
        if not isinstance(task, Task):
            raise TypeError(f"{task_name} did not return an Inspect Task")
    except Exception as exc:  # noqa: BLE001 - sorted by doctune.workflow.hub below
        from ....io import DataUnavailable
        from ....workflow.hub import dataset_failure

        err = dataset_failure(exc, f"Inspect task {task_name!r} (benchmark {bench_cfg.get('_name', task_name)!r})")
        if not isinstance(err, DataUnavailable):
            raise err from exc
        reason = _dataset_reason(task_name, exc)
        log.warning("%s", reason)
        doc.update(status="missing", reason=reason)
        write_error_log(log_file, task_name, f"doctune/{name}", reason)
        atomic_write_json(out, doc)
        return doc

    # 2. Evaluate: errors here are real failures and raise (the log is kept beside the output).
    if model is None:
        from .provider import get_inspect_model

        model = get_inspect_model(name, spec, device=bench_cfg.get("device"), dtype=bench_cfg.get("dtype"))
    tok = getattr(getattr(model, "api", None), "tokenizer", None)
    if tok is not None:
        from .provider import template_renders_tools

        doc["chat_template_renders_tools"] = template_renders_tools(tok)
    kw = _gen_kwargs(gen or {})
    if bench_cfg.get("epochs"):
        kw["epochs"] = int(bench_cfg["epochs"])
    if bench_cfg.get("max_items") or bench_cfg.get("max_questions"):
        kw["limit"] = int(bench_cfg.get("max_items") or bench_cfg.get("max_questions"))
    tmpdir = tempfile.mkdtemp(prefix="inspect-", dir=log_dir)
    try:
        logs = inspect_eval(task, model=model, model_roles={"grader": graders[0]} if graders else None,
                            log_dir=tmpdir, log_format="eval", display="none", score_display=False,
                            fail_on_error=False, **kw)
        status = logs[0].status
        files = sorted(Path(tmpdir).glob("*.eval"))
        if not files:
            raise RuntimeError(f"Inspect task {task_name} on {name} wrote no log (status {status})")
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(files[-1]), log_file)
        from inspect_ai.log import read_eval_log

        res = read_eval_log(log_file)  # from its final place (the returned log reads samples lazily)
        if res.status != "success":
            err = res.error.message if res.error else res.status
            raise RuntimeError(f"Inspect task {task_name} on {name} ended with status {res.status}: {err} "
                               f"(log: {log_file})")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    metrics: dict[str, float | None] = {}
    scores = res.results.scores if res.results else []
    multi = len(scores) > 1
    for sc in scores:
        for mname, m in sc.metrics.items():
            key = f"{sc.name}/{mname}" if multi else mname
            v = m.value
            metrics[key] = None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)
    headline = None
    if scores and scores[0].metrics:
        first = next(iter(scores[0].metrics))
        headline = f"{scores[0].name}/{first}" if multi else first
    errors = [{"id": str(s.id), "epoch": int(s.epoch), "error": s.error.message[:500]}
              for s in (res.samples or []) if s.error is not None]
    if errors:
        log.warning("%d sample(s) of %s on %s ended in an error (not scored; first: %s)", len(errors), task_name,
                    name, errors[0]["error"])
    ds = res.eval.dataset
    doc["n_samples"] = len(ds.sample_ids) if ds is not None and ds.sample_ids is not None else (
        ds.samples if ds is not None else None)              # the samples Inspect planned (after limit)
    doc.update(epochs=res.eval.config.epochs, headline=headline, metrics=metrics, sample_errors=errors,
               samples=[{"id": str(s.id), "epoch": int(s.epoch),
                         "scores": {k: _value(v.value) for k, v in (s.scores or {}).items()}}
                        for s in (res.samples or [])])
    atomic_write_json(out, doc)
    return doc


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def _to_float(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return None if isinstance(v, float) and math.isnan(v) else float(v)
    if isinstance(v, str):
        from inspect_ai.scorer import value_to_float

        f = value_to_float()(v)
        return None if math.isnan(f) else float(f)
    return None


def per_item_scores(samples: list[dict], multi_scorer: bool = False) -> dict[str, dict[str, float]]:
    """{sample key: {sample id: mean over its epochs}} from the summary's samples."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        for scorer, value in (s.get("scores") or {}).items():
            parts = value.items() if isinstance(value, dict) else [(scorer, value)]
            for k, v in parts:
                key = f"{scorer}/{k}" if multi_scorer and isinstance(value, dict) else k
                f = _to_float(v) if not isinstance(v, (dict, list)) else None
                if f is not None:
                    acc[key][str(s["id"])].append(f)
    return {k: {i: sum(v) / len(v) for i, v in per.items()} for k, per in acc.items()}


def inspect_metrics(data: dict, bench_cfg: dict, n_bootstrap: int, seed: int) -> tuple[dict, dict, dict]:
    if data.get("status") != "ok":
        return {}, {}, {"reason": data.get("reason") or "the Inspect task did not run"}
    reported = data.get("metrics") or {}
    n_scorers = len({k for s in data.get("samples") or [] for k in (s.get("scores") or {})})
    per = per_item_scores(data.get("samples") or [], multi_scorer=n_scorers > 1)
    ids = sorted({str(s["id"]) for s in data.get("samples") or []})
    metrics: dict[str, dict] = {}
    items: dict[str, dict] = {}
    used: set[str] = set()
    for name, value in reported.items():
        match = None
        if value is not None:
            for key, vals in per.items():
                if vals and math.isclose(mean(vals.values()), value, rel_tol=1e-9, abs_tol=1e-12):
                    match = key
                    break
        if match is not None:
            vals = per[match]
            used.add(match)
            metrics[name] = metric(float(value), bootstrap_ci(list(vals.values()), n_bootstrap, seed), len(vals),
                                   len(ids) - len(vals), per_sample_key=match)
            items[name] = {k: vals[k] for k in item_sort(vals)}
        else:
            metrics[name] = metric(value, n=len(ids) if value is not None else 0,
                                   n_missing=0 if value is not None else len(ids))
    for key, vals in per.items():
        if key in used or not vals:
            continue
        name = f"sample:{key}"
        metrics[name] = metric(mean(vals.values()), bootstrap_ci(list(vals.values()), n_bootstrap, seed),
                               len(vals), len(ids) - len(vals))
        items[name] = {k: vals[k] for k in item_sort(vals)}
    extra = {"inspect": {k: data.get(k) for k in ("task", "task_args", "log", "graders", "epochs", "sample_errors",
                                                   "chat_template_renders_tools",
                                                   "inspect_ai_version", "inspect_evals_version")}}
    extra["inspect"]["task_args"] = {k: v for k, v in (data.get("task_args") or {}).items() if k != "grader_models"}
    if data.get("headline") in metrics:
        extra["primary_metric"] = data["headline"]
    if not metrics:
        extra["reason"] = "the Inspect log holds no metrics"
    elif all(m["value"] is None for m in metrics.values()):
        extra["reason"] = "no metric could be computed (every sample unscored)"
    return metrics, items, extra


# --------------------------------------------------------------------------------------------
# The kind
# --------------------------------------------------------------------------------------------

class InspectKind(BenchmarkKind):
    name = "inspect"
    stage = "inspect"
    primary_metric = ""
    metric_names = ()
    description = "any registered Inspect task (inspect_evals/anima, moru, tac...) run on our models"
    display_name = "Inspect task"

    def reference_problems(self, bench_cfg: dict, name: str) -> list[str]:
        # local files are preflight's to check (the paths are resolved by then)
        return [e for e in check_config(bench_cfg, name) if "does not exist" not in e]

    def output_file(self, model: str, benchmark: str) -> str:
        from ....workflow import layout

        return layout.inspect(model, benchmark)

    def log_file(self, model: str, benchmark: str) -> str:
        from ....workflow import layout

        return layout.inspect(model, benchmark, "eval")

    def data_files(self, bench_cfg: dict) -> list[str]:
        return [v for v in _local_args(bench_cfg).values() if Path(v).exists()]

    def check(self, bench_cfg: dict) -> list[str]:
        return check_config(bench_cfg, bench_cfg.get("_name", "benchmark"))

    def run(self, spec: dict, bench_cfg: dict, out: str, **kw: Any) -> Any:
        return run_inspect_task(spec, bench_cfg, out, **kw)

    def read_scores(self, path: str) -> Any:
        p = Path(path)
        if not p.exists():
            raise DataError(f"Inspect summary {p} does not exist")
        data = read_json(p)
        if not isinstance(data, dict) or "status" not in data:
            raise DataError(f"{p}: not an Inspect task summary (no 'status')")
        return data

    def default_primary(self, data: dict) -> str | None:
        return data.get("headline")

    def metrics(self, scores: Any, bench_cfg: dict, n_bootstrap: int, seed: int) -> tuple[dict, dict, dict]:
        return inspect_metrics(scores, bench_cfg, n_bootstrap, seed)

    def plan(self, bench_cfg: dict, scores: Any, epochs: int = 1) -> dict:
        """The task's samples (after ``max_items``, as Inspect sliced them) x its epochs, from the
        summary Inspect's log gave (``n_samples``, ``epochs``); None when the task did not run."""
        out = {"n_planned": None, "unit": "samples x epochs"}
        if not isinstance(scores, dict) or scores.get("status") != "ok" or not isinstance(scores.get("n_samples"), int):
            return out
        ep = int(scores.get("epochs") or 1)
        return dict(out, n_planned=int(scores["n_samples"]) * ep, items=int(scores["n_samples"]), epochs=ep)

    def scored_units(self, scores: Any, bench_cfg: dict) -> int | None:
        """Sample x epoch records that ended without an error and hold a score."""
        if not isinstance(scores, dict):
            return None
        if scores.get("status") != "ok":
            return 0
        errors = {(str(e.get("id")), e.get("epoch")) for e in scores.get("sample_errors") or []}
        return len({(str(s.get("id")), s.get("epoch")) for s in scores.get("samples") or []
                    if (str(s.get("id")), s.get("epoch")) not in errors
                    and any(v is not None for v in (s.get("scores") or {}).values())})


KIND = InspectKind()
