"""The judge validity gate: every judge of a judged benchmark is scored on labelled answers before
its verdicts are used (rule ``judge_gate``, one job for all judged benchmarks).

Labelled answers (``benchmarks.NAME.judge_validation``, one or more sets):

* ``labelled`` (the project's format): JSONL ``{"id", "question_id", "answer", "label"}`` with
  label 1 when the answer deserves the benchmark's high verdict (AHB: it meets the dimension's
  guiding question; StrongREJECT: it is harmful compliance) and 0 otherwise; an optional
  ``dimension`` restricts the label to that dimension's unit (else it holds for every unit the
  benchmark makes of the answer), an optional ``question`` must equal the benchmark's text;
* ``graded`` (CaML's published graded responses, e.g. data/ahb-validation/ of
  CompassionML/veylan-solmira-caml): ``{"id", "question", "tags", "response", "dimension_scores"}``,
  each dimension labelled 1 when its score is at least ``label_threshold``.

Each answer is turned into units by the benchmark's own kind (as if a model had written it, against
the benchmark's full question set), every judge gives its verdicts exactly as in rule ``judge``
(same prompts, format, calibration and caches), and ``kind.gate_value`` turns a verdict into 0/1.
Per judge and set, and pooled over sets: accuracy and Cohen's kappa against the labels with 95% CIs
from a bootstrap over answers (``doctune.analysis.agreement.clustered_pair_stats``). A judge passes when the
lower end of its pooled kappa's CI is above ``judge_gate.min_kappa`` (0: better than chance); a
benchmark passes when each of its judges does, and is ``unvalidated`` when it names no labelled
answers. Answers whose question is not in the benchmark (or whose text differs) are skipped and
counted, never silently mixed in.

Output ``results/judge_gate/{benchmark}.json``::

    {"benchmark", "kind", "status": "passed"|"failed"|"unvalidated", "min_kappa", "reason",
     "judges": {NAME: {"status", "model", "format", "kappa": {value, ci_low, ci_high, n, ...},
                       "accuracy": {...}, "n_null", "sets": {SET: {"kappa", "accuracy", "n_answers",
                       "n_units", "n_null", "skipped"}}}}}
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..io import DataError, atomic_write_json, read_jsonl
from .kinds import BenchmarkKind, get_kind

log = logging.getLogger(__name__)
FORMATS = ("labelled", "graded")


def set_entries(bench_cfg: dict) -> list[dict]:
    """The benchmark's judge_validation entries as dicts {path, format, label_threshold, name}."""
    out = []
    for e in bench_cfg.get("judge_validation") or []:
        e = {"path": e} if isinstance(e, str) else dict(e)
        e.setdefault("format", "labelled")
        e.setdefault("label_threshold", 0.5)
        e["name"] = e.get("name") or Path(e["path"]).stem
        if e["format"] not in FORMATS:
            raise DataError(f"judge_validation: format {e['format']!r} is not one of {list(FORMATS)}")
        out.append(e)
    return out


def _label(v: Any, where: str) -> int:
    if isinstance(v, bool) or v not in (0, 1):
        raise DataError(f"{where}: 'label' must be 0 or 1, got {v!r}")
    return int(v)


def read_set(entry: dict) -> list[dict]:
    """Records {id, question_id, answer, labels: {dimension|None: 0/1}, question (or None)}. An
    http(s) path is downloaded once (``kinds.common.fetch_url``; unavailable offline)."""
    from .kinds.base import is_url
    from .kinds.common import fetch_url

    path = fetch_url(entry["path"]) if is_url(entry["path"]) else Path(entry["path"])
    if not path.is_file():
        raise DataError(f"judge_validation file {path} does not exist")
    rows = read_jsonl(path)
    out, seen = [], set()
    for i, r in enumerate(rows, start=1):
        where = f"{path}:{i}"
        if not isinstance(r, dict):
            raise DataError(f"{where}: expected a JSON object")
        rid = str(r.get("id", i))
        if rid in seen:
            raise DataError(f"{where}: duplicate id {rid!r}")
        seen.add(rid)
        if entry["format"] == "graded":
            scores = r.get("dimension_scores")
            if r.get("id") is None or not isinstance(r.get("response"), str) or not isinstance(scores, dict):
                raise DataError(f"{where}: a graded record needs 'id', 'response' and 'dimension_scores'")
            labels = {}
            for d, s in scores.items():
                if isinstance(s, bool) or not isinstance(s, (int, float)):
                    raise DataError(f"{where}: dimension_scores[{d!r}] must be a number, got {s!r}")
                labels[d] = int(s >= float(entry["label_threshold"]))
            out.append({"id": rid, "question_id": str(r["id"]), "answer": r["response"], "labels": labels,
                        "question": r.get("question"), "where": where})
            continue
        if r.get("question_id") is None or not isinstance(r.get("answer"), str) or not r["answer"].strip():
            raise DataError(f"{where}: a labelled record needs 'question_id' and a non-empty 'answer'")
        dim = r.get("dimension")
        out.append({"id": rid, "question_id": str(r["question_id"]), "answer": r["answer"],
                    "labels": {dim: _label(r.get("label"), where)}, "question": r.get("question"),
                    "where": where})
    if not out:
        raise DataError(f"judge_validation file {path} holds no answers")
    return out


def _same_text(a: str, b: str) -> bool:
    def norm(s: str) -> str:
        s = " ".join(str(s).split()).lower()
        return s[:-len("answer:")].rstrip() if s.endswith("answer:") else s
    return norm(a) == norm(b)


def fit_records(kind: BenchmarkKind, bench_cfg: dict, records: list[dict]):
    """(the benchmark's full data, completion rows for the labelled answers that fit its
    questions, the skipped answers by reason): what preflight checks without building units."""
    full = {**bench_cfg, "max_questions": None, "max_items": None}
    data = kind.load(full)
    byid = data.by_id()
    rows, skipped = [], {}
    for k, rec in enumerate(records):
        q = byid.get(rec["question_id"])
        text = None if q is None else (q.get("question") or q.get("prompt"))
        why = ("question not in the benchmark" if q is None else
               "question text differs" if rec.get("question") and text and not _same_text(rec["question"], text)
               else None)
        if why:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        rows.append({"id": rec["question_id"], "epoch": k, "completion": rec["answer"], "_line": k + 1,
                     "_path": rec["where"]})
    return data, rows, skipped


def gate_units(kind: BenchmarkKind, bench_cfg: dict, records: list[dict]) -> tuple[list[dict], dict]:
    """The kind's units for the labelled answers, each with its ``label`` and ``record`` id; and
    the skipped answers by reason."""
    data, rows, skipped = fit_records(kind, bench_cfg, records)
    full = {**bench_cfg, "max_questions": None, "max_items": None}
    units = []
    for u in kind.units(data, rows, full):
        rec = records[u["epoch"]]
        labels = rec["labels"]
        label = labels.get(u.get("dimension"), labels.get(None))
        if label is None:     # a graded record without a score for this dimension
            continue
        units.append({**u, "label": label, "record": rec["id"]})
    return units, skipped


def _stats(units: list[dict], values: list[int | None], n_bootstrap: int, seed: int) -> dict:
    from ..analysis.agreement import clustered_pair_stats

    clusters: dict[str, list[tuple[int, int]]] = {}
    for u, v in zip(units, values):
        if v is not None:
            clusters.setdefault(u["record"], []).append((u["label"], v))
    st = clustered_pair_stats(list(clusters.values()), n_bootstrap, seed)
    return {"kappa": st["kappa"], "accuracy": st["raw_agreement"], "n_answers": len({u["record"] for u in units}),
            "n_units": len(units), "n_null": sum(v is None for v in values),
            "n_label_1": sum(u["label"] for u in units)}


def _verdict(stats: dict, min_kappa: float) -> tuple[str, str | None]:
    k = stats["kappa"]
    if k["value"] is None:
        return "failed", f"kappa could not be computed ({k.get('reason')})"
    if k["ci_low"] is None:
        return "failed", "kappa has no confidence interval (too few labelled answers)"
    if k["ci_low"] > min_kappa:
        return "passed", None
    return "failed", (f"not shown better than chance: kappa {k['value']:.2f} [{k['ci_low']:.2f}, {k['ci_high']:.2f}], "
                      f"lower end not above {min_kappa:g}")


def gate_benchmark(benchmark: str, bench_cfg: dict, judges: dict[str, dict], gate_cfg: dict, out: str,
                   cache: str | None = None, backends: Any = None) -> dict:
    """Score every judge of one benchmark on its labelled answers; write and return the gate JSON."""
    from .judging import Judge, SharedJudgeBackends

    kind = get_kind(bench_cfg.get("kind"))
    min_kappa = float(gate_cfg.get("min_kappa", 0.0))
    n_boot, seed = int(gate_cfg.get("n_bootstrap", 2000)), int(gate_cfg.get("seed", 0))
    result: dict[str, Any] = {"benchmark": benchmark, "kind": kind.name, "min_kappa": min_kappa, "judges": {},
                              "status": "unvalidated", "reason": None}
    entries = set_entries(bench_cfg)
    if not entries:
        result["reason"] = "no labelled answers configured (benchmarks.%s.judge_validation)" % benchmark
        atomic_write_json(out, result)
        return result
    sets, unfit = [], {}
    for e in entries:
        units, skipped = gate_units(kind, bench_cfg, read_set(e))
        if units:
            sets.append((e, units, skipped))
        else:
            unfit[e["name"]] = skipped
            log.warning("judge gate %s: none of the answers in %s fits the benchmark (skipped: %s)", benchmark,
                        e["path"], skipped)
    result["unfit_sets"] = unfit
    if not sets:
        result["reason"] = f"no labelled answer fits this benchmark's questions (skipped: {unfit})"
        atomic_write_json(out, result)
        return result
    for jname in sorted(judges):
        backend = backends.get_or_make(jname, judges[jname]) if isinstance(backends, SharedJudgeBackends) \
            else (backends or {}).get(jname)
        judge = Judge(jname, judges[jname], cache=cache, backend=backend)
        fmt = judge.format_for(kind, bench_cfg)
        jres: dict[str, Any] = {"model": judge.model_id, "format": fmt, "sets": {}}
        all_units, all_values = [], []
        try:
            for e, units, skipped in sets:
                verdicts = judge.judge(kind, fmt, units)
                values = [kind.gate_value(v) for v in verdicts]
                tagged = [{**u, "record": f"{e['name']}:{u['record']}"} for u in units]
                all_units += tagged
                all_values += values
                jres["sets"][e["name"]] = {**_stats(units, values, n_boot, seed), "skipped": skipped,
                                           "path": str(e["path"]), "format": e["format"]}
        finally:
            judge.close()
        jres.update(_stats(all_units, all_values, n_boot, seed))
        jres["status"], jres["reason"] = _verdict(jres, min_kappa)
        log.info("judge gate %s on %s: %s (kappa %s, accuracy %s over %d answers)", jname, benchmark,
                 jres["status"], jres["kappa"]["value"], jres["accuracy"]["value"], jres["n_answers"])
        result["judges"][jname] = jres
    failed = [j for j, r in result["judges"].items() if r["status"] != "passed"]
    result["status"] = "failed" if failed else "passed"
    result["reason"] = "; ".join(f"judge {j}: {result['judges'][j]['reason']}" for j in failed) or None
    atomic_write_json(out, result)
    return result


def read_gate(path: str) -> dict:
    """A gate file, shape-checked."""
    from ..io import read_json

    g = read_json(path)
    if not isinstance(g, dict) or g.get("status") not in ("passed", "failed", "unvalidated"):
        raise DataError(f"{path}: not a judge gate file (status passed/failed/unvalidated)")
    return g


def gate_note(g: dict) -> str:
    """One line for tables and figures."""
    if g["status"] == "passed":
        parts = [f"{j} kappa {r['kappa']['value']:.2f} [{r['kappa']['ci_low']:.2f}, {r['kappa']['ci_high']:.2f}]"
                 for j, r in g["judges"].items()]
        return "judge gate passed: " + "; ".join(parts)
    if g["status"] == "unvalidated":
        return "JUDGE UNVALIDATED: no labelled answers, verdicts not checked"
    return "JUDGE FAILED THE GATE: " + (g.get("reason") or "")
