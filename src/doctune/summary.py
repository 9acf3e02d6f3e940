"""results/summary.tsv: every metric of every model and benchmark, in long format.

Columns: model, benchmark, metric, value, ci_low, ci_high, n, n_missing, status, note, primary,
n_seeds, seed_sd, n_dropped (questions the loader dropped, e.g. for a tag naming no dimension; the
note names their tags).
A value that could not be computed is written empty (never 0) with status ``missing`` and the
reason in ``note``. A demo run starts with a ``# DEMO`` comment line and says so in every note;
read the file with ``pandas.read_csv(path, sep="\\t", comment="#")`` (no cell contains '#').
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import DataError, atomic_write_text
from .stats import DEMO_BANNER, format_tsv, load_metrics_file

COLUMNS = ["model", "benchmark", "metric", "value", "ci_low", "ci_high", "n", "n_missing",
           "status", "note", "primary", "n_seeds", "seed_sd", "n_dropped"]
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
                row["status"] = "ok"
                if row["n_missing"]:
                    notes.append(f"{row['n_missing']} unit(s) missing")
            if row["status"] == "missing":
                for k in ("value", "ci_low", "ci_high"):
                    row[k] = None if status != "ok" else row[k]
            if dropped_note:
                notes.append(dropped_note)
            row["n_dropped"] = n_dropped
            row["note"] = "; ".join(notes) or None
            rows.append(row)
    return rows


def write_summary(metrics_files: dict[str, dict[str, str]], out: str, demo: bool = False,
                  expected: list[tuple[str, str]] | None = None, agreement: str | None = None) -> list[dict]:
    """Write the summary TSV and its provenance sidecar; returns the rows.

    metrics_files = {model: {benchmark: path}}; expected = (model, benchmark) pairs that must
    appear (a pair without a file gets a ``missing`` row); agreement = the agreement JSON whose
    rows (people vs judges, judge vs judge) are appended."""
    rows = summary_rows(metrics_files, expected)
    if agreement:
        from .agreement import agreement_summary_rows

        rows += agreement_summary_rows(agreement)
    if demo:
        for r in rows:
            r["note"] = "; ".join(x for x in (DEMO_NOTE, r.get("note")) if x)
    atomic_write_text(out, format_tsv(rows, COLUMNS, DEMO_BANNER if demo else None))
    from .provenance import write_sidecar

    inputs = [p for per in metrics_files.values() for p in per.values() if Path(p).exists()]
    inputs += [agreement] if agreement else []
    write_sidecar(out, inputs, {"demo": demo, "expected": [list(x) for x in expected or []]},
                  rule="summary")
    return rows
