"""results/summary.tsv: every metric of every model and benchmark, in long format.

Columns: model, benchmark, metric, value, ci_low, ci_high, n, n_missing, status, note, primary,
n_seeds, seed_sd, n_dropped (questions the loader dropped, e.g. for a tag naming no dimension; the
note names their tags), p_value, judge_gate, n_planned (the units the run planned for the model x
benchmark: the completeness audit of its metrics file).

Status: ``ok``; ``incomplete`` when the metrics file scored another number of units than the run
planned (``n_scored`` != ``n_planned``): every row of that model x benchmark whose value could be
computed says so, with the counts in the note (``scored 798 of 1,140 planned units``); ``missing``
when a value could not be computed (a missing file is still ``missing``).

Row order: the manipulation check first (``doctune.analysis.manipulation``: per pair of document arm and
control, metric ``manipulation_check`` with the verdict in words in ``note``, then metrics
``manipulation:own``, ``manipulation:other``, ``manipulation:arm_vs_base`` and
``manipulation:control_vs_base``: differences of the probe margin with CI and paired p; model
``A - B``), then every metric of every model and benchmark, then the dose-response rows of the
sweeps (``doctune.analysis.dose_response.summary_rows``: each sweep's trend per benchmark, model
``sweep:NAME``, and each point against the control), then the contamination guard's counts
(model ``contamination:SOURCE``, metric ``contamination:texts_flagged``: texts of the source flagged
against the benchmark's items, n = texts checked; ``missing`` when the benchmark's items could not
be read), then the judge gates (model
``judge:NAME``, metrics ``judge_gate:kappa`` and ``judge_gate:accuracy`` against labelled answers,
with CIs), then the agreement rows. ``judge_gate`` is the gate's verdict (passed, failed,
unvalidated) on every row of a judged benchmark: a benchmark whose judge did not pass is flagged
in its note, never silently trusted.
A value that could not be computed is written empty (never 0) with status ``missing`` and the
reason in ``note``. A demo run starts with a ``# DEMO`` comment line and says so in every note;
read the file with ``pandas.read_csv(path, sep="\\t", comment="#")`` (no cell contains '#').
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import DataError, atomic_write_text
from .stats import DEMO_BANNER, completeness_note, format_tsv, load_metrics_file

COLUMNS = ["model", "benchmark", "metric", "value", "ci_low", "ci_high", "n", "n_missing",
           "status", "note", "primary", "n_seeds", "seed_sd", "n_dropped", "p_value", "judge_gate",
           "n_planned"]
DEMO_NOTE = "DEMO: numbers exercise the pipeline, no evidence"


def _number(x: Any, where: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise DataError(f"{where}: expected a number or null, got {x!r}")
    return None if x != x else float(x)


def _count(x: Any, where: str) -> int | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int):
        raise DataError(f"{where}: expected an integer or null, got {x!r}")
    return x


def _missing_row(model: str, benchmark: str, metric: str, reason: str) -> dict:
    return {"model": model, "benchmark": benchmark, "metric": metric, "status": "missing",
            "note": reason}


def _dropped(doc: dict, path: str) -> tuple[int | None, str | None]:
    """Questions the benchmark's loader dropped (e.g. an AHB tag naming no dimension): their count
    and a note naming the tags, from the metrics file's ``dataset`` block (None when absent)."""
    ds = doc.get("dataset")
    if not isinstance(ds, dict) or ds.get("n_dropped") is None:
        return None, None
    n = _count(ds.get("n_dropped"), f"{path}: dataset.n_dropped")
    if not n:
        return n, None
    tags: list[str] = []
    whys: list[str] = []
    for d in ds.get("dropped") or []:
        if not isinstance(d, dict):
            continue
        # the offending tags when the file says which (bad_tags), else all of the question's
        bad = d.get("bad_tags") if d.get("bad_tags") else d.get("tags")
        for t in (bad if isinstance(bad, list) else [bad]):
            t = "" if t is None else str(t)
            if repr(t) not in tags:
                tags.append(repr(t))
        if d.get("why") and not d.get("bad_tags") and str(d["why"]) not in whys:
            whys.append(str(d["why"]))
    what = [f"tags {', '.join(tags)}"] if tags else []
    what += whys
    return n, f"{n} question(s) dropped by the loader" + (f" ({'; '.join(what)})" if what else "")


def summary_rows(metrics_files: dict[str, dict[str, str]],
                 expected: list[tuple[str, str]] | None = None) -> list[dict]:
    """The summary's rows: models and benchmarks in the order given (then expected pairs that had
    no file), metrics in file order."""
    rows: list[dict] = []
    pairs = [(m, b) for m, per in metrics_files.items() for b in per]
    for m, b in expected or []:
        if (m, b) not in pairs:
            pairs.append((m, b))
    for model, bench in pairs:
        path = (metrics_files.get(model) or {}).get(bench)
        if path is None:
            rows.append(_missing_row(model, bench, "", "no metrics file was produced for this "
                                                       "model and benchmark"))
            continue
        if not Path(path).exists():
            rows.append(_missing_row(model, bench, "", f"metrics file {path} does not exist"))
            continue
        doc = load_metrics_file(path)
        n_dropped, dropped_note = _dropped(doc, path)
        status = doc.get("status", "ok")
        primary = doc.get("primary_metric")
        metrics = doc.get("metrics") or {}
        reason = doc.get("reason")
        if not metrics:
            why = f"status {status}: {reason}" if reason else f"{path} has no metrics"
            rows.append(_missing_row(model, bench, primary or "", why))
            continue
        gate = doc.get("judge_gate") if isinstance(doc.get("judge_gate"), dict) else None
        n_planned = _count(doc.get("n_planned"), f"{path}: n_planned")
        short = completeness_note(n_planned, _count(doc.get("n_scored"), f"{path}: n_scored"))
        for name, m in metrics.items():
            where = f"{path}: metrics[{name!r}]"
            row = {"model": model, "benchmark": bench, "metric": name,
                   "value": _number(m.get("value"), f"{where}.value"),
                   "ci_low": _number(m.get("ci_low"), f"{where}.ci_low"),
                   "ci_high": _number(m.get("ci_high"), f"{where}.ci_high"),
                   "n": _count(m.get("n"), f"{where}.n"),
                   "n_missing": _count(m.get("n_missing"), f"{where}.n_missing"),
                   "primary": name == primary,
                   "n_seeds": _count(m.get("n_seeds", doc.get("n_seeds", 1)), f"{where}.n_seeds"),
                   "seed_sd": _number(m.get("seed_sd"), f"{where}.seed_sd")}
            notes = []
            if status != "ok":
                row["status"] = "missing"
                notes.append(f"metrics status {status}" + (f": {reason}" if reason else ""))
            elif row["value"] is None:
                row["status"] = "missing"
                notes.append(m.get("reason") or m.get("note") or "value could not be computed")
            else:
                row["status"] = "incomplete" if short else "ok"
                if row["n_missing"]:
                    notes.append(f"{row['n_missing']} unit(s) missing")
            if short:
                notes.insert(0, short)
            if row["status"] == "missing":
                for k in ("value", "ci_low", "ci_high"):
                    row[k] = None if status != "ok" else row[k]
            if dropped_note:
                notes.append(dropped_note)
            if gate is not None:
                row["judge_gate"] = gate.get("status")
                if gate.get("status") != "passed":
                    notes.insert(0, gate.get("note") or f"judge gate {gate.get('status')}")
            row["n_dropped"] = n_dropped
            row["n_planned"] = n_planned
            row["note"] = "; ".join(notes) or None
            rows.append(row)
    return rows


def manipulation_rows(path: str) -> list[dict]:
    """The manipulation check's rows for the summary (module docstring)."""
    from .manipulation import read_manipulation

    out = []
    for r in read_manipulation(path):
        verdict = r["row_type"] == "verdict"
        ok = r.get("diff") is not None
        note = r["verdict"] if verdict else r.get("note")
        if verdict and r.get("note"):
            note = f"{note}; {r['note']}"
        out.append({"model": f"{r['arm']} vs {r['control']}" if verdict else f"{r['model_a']} - {r['model_b']}",
                    "benchmark": r["probe"],
                    "metric": "manipulation_check" if verdict else f"manipulation:{r['comparison']}",
                    "value": r.get("diff"), "ci_low": r.get("ci_low"), "ci_high": r.get("ci_high"),
                    "n": r.get("n"), "status": "ok" if ok else "missing", "note": note,
                    "p_value": r.get("p_value"), "primary": verdict})
    return out


def gate_rows(gates: dict[str, str]) -> list[dict]:
    """Each judge's kappa and accuracy on each judged benchmark's labelled answers."""
    from ..evaluation.judge_gate import read_gate
    from ..io import missing_marker

    out = []
    for bench, path in gates.items():
        if not Path(path).exists() or missing_marker(path):
            why = missing_marker(path) or f"{path} does not exist"
            out.append({**_missing_row("judge", bench, "judge_gate", f"the judge gate could not run: {why}"),
                        "judge_gate": "unvalidated"})
            continue
        g = read_gate(path)
        if g["status"] == "unvalidated":
            out.append({"model": "judge", "benchmark": bench, "metric": "judge_gate", "status": "missing",
                        "judge_gate": "unvalidated", "note": g.get("reason")})
            continue
        for j, r in g["judges"].items():
            for stat in ("kappa", "accuracy"):
                m = r[stat]
                out.append({"model": f"judge:{j}", "benchmark": bench, "metric": f"judge_gate:{stat}",
                            "value": m.get("value"), "ci_low": m.get("ci_low"), "ci_high": m.get("ci_high"),
                            "n": r.get("n_units"), "n_missing": r.get("n_null"),
                            "status": "ok" if m.get("value") is not None else "missing",
                            "judge_gate": r["status"], "primary": stat == "kappa",
                            "note": (f"{r['n_answers']} labelled answers, {r['n_units']} units; judge {r['status']}"
                                     + (f": {r['reason']}" if r.get("reason") else ""))})
    return out


def write_summary(metrics_files: dict[str, dict[str, str]], out: str, demo: bool = False,
                  expected: list[tuple[str, str]] | None = None, agreement: str | None = None,
                  manipulation: str | None = None, gates: dict[str, str] | None = None,
                  dose: str | None = None,
                  contamination: tuple[dict[str, str], dict[str, str]] | None = None) -> list[dict]:
    """Write the summary TSV and its provenance sidecar; returns the rows.

    metrics_files = {model: {benchmark: path}}; expected = (model, benchmark) pairs that must
    appear (a pair without a file gets a ``missing`` row); agreement = the agreement JSON whose
    rows (people vs judges, judge vs judge) are appended; manipulation = the manipulation check's
    TSV (its rows come first); gates = {benchmark: judge gate file} (their rows follow the metrics)."""
    rows = manipulation_rows(manipulation) if manipulation else []
    rows += summary_rows(metrics_files, expected)
    if dose:
        from .dose_response import summary_rows as dose_rows

        rows += dose_rows(dose)
    if contamination and contamination[0]:
        from ..data.contamination import summary_rows as contamination_rows

        rows += contamination_rows(*contamination)
    rows += gate_rows(gates or {})
    if agreement:
        from .agreement import agreement_summary_rows

        rows += agreement_summary_rows(agreement)
    if demo:
        for r in rows:
            r["note"] = "; ".join(x for x in (DEMO_NOTE, r.get("note")) if x)
    atomic_write_text(out, format_tsv(rows, COLUMNS, DEMO_BANNER if demo else None))
    from ..workflow.provenance import write_sidecar

    inputs = [p for per in metrics_files.values() for p in per.values() if Path(p).exists()]
    inputs += [agreement] if agreement else []
    inputs += [manipulation] if manipulation else []
    inputs += [dose] if dose else []
    inputs += [p for d in (contamination or ({}, {})) for p in d.values() if Path(p).exists()]
    inputs += [p for p in (gates or {}).values() if Path(p).exists()]
    write_sidecar(out, inputs, {"demo": demo, "expected": [list(x) for x in expected or []]},
                  rule="summary")
    return rows
