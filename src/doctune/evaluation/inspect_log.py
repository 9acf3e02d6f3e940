"""Inspect logs of our own evaluations: one ``.eval`` file per model x judged benchmark, so that
``inspect view`` and ``inspect log dump`` (inspect-ai 0.3.285) show our completions and verdicts.

Each completion row (``results/completions/{model}/{bench}.jsonl``: one item x epoch) becomes one
Inspect sample:

* ``id`` our item id, ``epoch`` our epoch + 1 (Inspect counts epochs from 1; ours from 0, kept as
  ``metadata.doctune_epoch``), ``input`` the chat messages sent (system prompt when configured,
  then the question), ``messages`` input + the completion, ``output`` the completion with its
  stop reason (``length`` -> ``max_tokens``), token counts as ``model_usage``;
* ``metadata`` the item's fields from the benchmark loader (AHB: language, tags; StrongREJECT:
  category, source...) plus the generation settings of the row;
* ``scores[<benchmark>]`` our verdicts: ``value`` holds the benchmark's metrics computed by our
  own metrics code on that sample's verdicts alone (AHB: ``overall_mean`` = the weighted mean over
  its dimensions, ``dimension:<name>``...; StrongREJECT: ``score``, ``refusal_rate``), so the mean
  of a metric over a question's epochs is that question's per-item score in
  ``results/metrics``; ``metadata.verdicts`` every judged unit (dimension, combination, judge,
  judge model, score or null, raw reply). A sample with no valid verdict is *unscored* (NaN, which
  Inspect's metrics skip), never 0.

The log header names the task ``doctune/<benchmark>`` and the model ``doctune/<model>``; its
results hold our aggregated metrics (``results/metrics/{model}/{bench}.json``) with CIs, n and
n_missing in each metric's metadata; a metric that could not be computed is left out (and listed
in ``results.metadata.missing_metrics``), never written as 0.

inspect-ai is imported only here (it is not in the core requirements: see requirements-inspect.txt).
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..io import DataError, missing_marker, read_json, read_jsonl, sha256_file, stable_hash

STOP_REASONS = {"stop": "stop", "length": "max_tokens", "tool_calls": "tool_calls"}


def _import_inspect():
    try:
        import inspect_ai  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("writing Inspect logs needs inspect-ai: pip install -r requirements-inspect.txt "
                           "(or run the rule with --software-deployment-method conda: envs/inspect.yaml)") from exc
    import inspect_ai
    return inspect_ai


def sample_metrics(kind: str, rows: list[dict]) -> dict[str, float]:
    """Our metrics computed on one sample's verdicts (no bootstrap); missing values left out."""
    from .kinds import get_kind

    k = get_kind(kind)
    if k.stage != "judge":
        raise ValueError(f"Inspect export: benchmark kind {kind!r} has no judged verdicts to export")
    metrics, _, _ = k.metrics(rows, {"kind": kind}, 0, 0)
    return {k: float(m["value"]) for k, m in metrics.items()
            if m["value"] is not None and not k.startswith("n_") and "@" not in k}


def _item_metadata(bench_cfg: dict) -> dict[str, dict]:
    from .kinds import get_kind

    return {str(it["id"]): {k: v for k, v in it.items() if k not in ("id", "prompt", "messages")}
            for it in get_kind(bench_cfg.get("kind")).prompts(bench_cfg)}


def _verdict(r: dict) -> dict:
    keep = ("unit_id", "dimension", "combination", "judge", "judge_model", "score", "fields", "weight", "prob",
            "raw", "error")
    return {k: r.get(k) for k in keep if r.get(k) is not None or k == "score"}


def _explanation(verdicts: list[dict]) -> str:
    lines = []
    for v in verdicts:
        where = " / ".join(str(v[k]) for k in ("dimension", "combination", "judge") if v.get(k))
        lines.append(f"- {where or v.get('unit_id')}: {'null (no valid verdict)' if v['score'] is None else v['score']}")
    return "\n".join(lines)


def _eval_metrics(metrics_file: str | None):
    """EvalMetric objects from our metrics JSON, and the names of metrics that are missing."""
    from inspect_ai.log import EvalMetric

    if not metrics_file:
        return {}, [], None
    data = read_json(metrics_file)
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise DataError(f"{metrics_file}: not a metrics file (no 'metrics' mapping)")
    out, missing = {}, []
    for name, m in data["metrics"].items():
        v = m.get("value") if isinstance(m, dict) else None
        if v is None or not math.isfinite(float(v)):
            missing.append(name)
            continue
        out[name] = EvalMetric(name=name, value=float(v),
                               metadata={k: m.get(k) for k in ("ci_low", "ci_high", "n", "n_missing")})
    return out, missing, data


def export_eval_log(model: str, benchmark: str, bench_cfg: dict, completions: str, scores: str, out: str,
                    metrics: str | None = None) -> dict:
    """Write ``out`` (.eval) from our completion, score and metrics files; returns a summary."""
    inspect_ai = _import_inspect()
    from inspect_ai.log import (EvalConfig, EvalDataset, EvalLog, EvalPlan, EvalPlanStep, EvalResults, EvalSample,
                                EvalScore, EvalSpec, EvalStats)
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser, ModelOutput, ModelUsage
    from inspect_ai.scorer import Score

    kind = bench_cfg.get("kind")
    upstream = next(((p, r) for p in (completions, scores) if (r := missing_marker(p))), None)
    if upstream is not None:  # the benchmark's data was unavailable: a log that says so
        write_error_log(out, f"doctune/{benchmark}", f"doctune/{model}", f"data unavailable ({upstream[0]}): {upstream[1]}")
        return {"samples": 0, "scored": 0, "epochs": 0, "missing": upstream[1]}
    comp_rows = read_jsonl(completions)
    score_rows = read_jsonl(scores)
    if any(r.get("status") == "missing" for r in score_rows):
        score_rows = []  # the benchmark could not be judged: samples stay unscored
    by_sample: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for i, r in enumerate(score_rows, start=1):
        if "item_id" not in r:
            raise DataError(f"{scores}:{i}: score line lacks 'item_id'")
        by_sample[(str(r["item_id"]), int(r.get("epoch") or 0))].append(r)
    items = _item_metadata(bench_cfg)
    system = bench_cfg.get("system_prompt")
    model_name = f"doctune/{model}"

    samples, seen = [], set()
    usage_in = usage_out = 0
    for i, r in enumerate(comp_rows, start=1):
        if "id" not in r:
            raise DataError(f"{completions}:{i}: completion row lacks 'id'")
        iid, epoch = str(r["id"]), int(r.get("epoch") or 0)
        if (iid, epoch) in seen:
            raise DataError(f"{completions}:{i}: duplicate completion for item {iid!r} epoch {epoch}")
        seen.add((iid, epoch))
        if iid not in items:
            raise DataError(f"{completions}:{i}: item {iid!r} is not in benchmark {benchmark!r}")
        sys_text = items[iid].get("system") or system
        inp = ([ChatMessageSystem(content=sys_text)] if sys_text else []) + [ChatMessageUser(content=r.get("prompt") or "")]
        text = r.get("completion")
        output = ModelOutput.from_content(model=model_name, content=text or "",
                                          stop_reason=STOP_REASONS.get(r.get("finish_reason"), "unknown"),
                                          error=None if text is not None else "no completion")
        ti, to = int(r.get("input_tokens") or 0), int(r.get("output_tokens") or 0)
        usage_in, usage_out = usage_in + ti, usage_out + to
        output.usage = ModelUsage(input_tokens=ti, output_tokens=to, total_tokens=ti + to)
        units = by_sample.pop((iid, epoch), [])
        verdicts = [_verdict(u) for u in units]
        values = sample_metrics(kind, units) if units else {}
        meta = {"verdicts": verdicts, "n_units": len(units), "n_null": sum(v["score"] is None for v in verdicts)}
        if values:
            score = Score(value=values, answer=text, explanation=_explanation(verdicts), metadata=meta)
        else:
            score = Score.unscored(reason="no valid verdict", answer=text, explanation=_explanation(verdicts),
                                   metadata=meta)
        samples.append(EvalSample(
            id=iid, epoch=epoch + 1, input=inp, target="",
            messages=inp + [ChatMessageAssistant(content=text or "", model=model_name, source="generate")],
            output=output, scores={benchmark: score},
            metadata={**{k: v for k, v in items[iid].items() if k != "system"}, "doctune_epoch": epoch,
                      "finish_reason": r.get("finish_reason"), "generation": r.get("generation")},
            model_usage={model_name: ModelUsage(input_tokens=ti, output_tokens=to, total_tokens=ti + to)},
        ))
    if by_sample:
        (iid, epoch), _ = next(iter(by_sample.items()))
        raise DataError(f"{scores}: verdicts for item {iid!r} epoch {epoch} have no completion in {completions}")

    eval_metrics, missing, mdata = _eval_metrics(metrics)
    epochs = max((s.epoch for s in samples), default=1)
    ids = list(dict.fromkeys(s.id for s in samples))
    gen = (comp_rows[0].get("generation") or {}) if comp_rows else {}
    source = bench_cfg.get("source") or {}
    location = source.get("path") or (f"{source.get('dataset')}@{source.get('revision')}" if source.get("dataset") else None)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    inputs_id = stable_hash([sha256_file(completions), sha256_file(scores)] + ([sha256_file(metrics)] if metrics else []), 22)
    judges = sorted({str(r.get("judge_model") or r.get("judge")) for r in score_rows if r.get("judge") is not None})
    log = EvalLog(
        status="success",
        eval=EvalSpec(
            eval_id=inputs_id, run_id=inputs_id, created=now, task=f"doctune/{benchmark}",
            task_id=stable_hash([benchmark, bench_cfg], 22), task_attribs={"kind": kind},
            dataset=EvalDataset(name=benchmark, location=location, samples=len(ids), sample_ids=ids),
            model=model_name, config=EvalConfig(epochs=epochs),
            packages={"inspect_ai": inspect_ai.__version__},
            metadata={"doctune": {"model": model, "benchmark": benchmark, "kind": kind, "judges": judges,
                                  "completions": str(completions), "scores": str(scores),
                                  "metrics": str(metrics) if metrics else None}},
        ),
        plan=EvalPlan(steps=[EvalPlanStep(solver="doctune/completions",
                                          params={k: gen.get(k) for k in ("max_new_tokens", "temperature", "top_p",
                                                                          "base_seed", "backend", "sampler")})]),
        results=EvalResults(
            total_samples=len(samples), completed_samples=len(samples),
            scores=[EvalScore(name=benchmark, scorer="doctune/judge", scored_samples=sum(
                1 for s in samples if not _unscored(s.scores[benchmark])),
                unscored_samples=sum(1 for s in samples if _unscored(s.scores[benchmark])),
                metrics=eval_metrics, metadata={"primary_metric": (mdata or {}).get("primary_metric")})],
            metadata={"missing_metrics": missing, "status": (mdata or {}).get("status"),
                      "reason": (mdata or {}).get("reason")},
        ),
        stats=EvalStats(started_at=now, completed_at=now, model_usage={model_name: ModelUsage(
            input_tokens=usage_in, output_tokens=usage_out, total_tokens=usage_in + usage_out)}),
        samples=samples,
    )
    write_log_atomic(log, out)
    return {"samples": len(samples), "scored": log.results.scores[0].scored_samples, "epochs": epochs}


def write_log_atomic(log, path: str) -> None:
    """Write an Inspect log (.eval) so that readers see either no file or the whole new one."""
    from inspect_ai.log import write_eval_log

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".eval")
    os.close(fd)
    try:
        write_eval_log(log, tmp, format="eval")
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_error_log(path: str, task: str, model: str, reason: str) -> None:
    """An Inspect log with status "error" saying why there is nothing to show (`inspect view`
    lists it with the reason)."""
    _import_inspect()
    from inspect_ai._util.error import EvalError
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSpec

    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    write_log_atomic(EvalLog(status="error", eval=EvalSpec(created=now, task=task, dataset=EvalDataset(), model=model,
                                                           config=EvalConfig()),
                             error=EvalError(message=reason, traceback="", traceback_ansi="")), path)


def _unscored(score) -> bool:
    v = score.value
    return isinstance(v, float) and math.isnan(v)
