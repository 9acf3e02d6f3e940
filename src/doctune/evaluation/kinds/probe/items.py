"""Probe items: reading and checking them, from a local JSONL/JSON/CSV file or a hub dataset.

An item is ``{"id", "prompt", "preferred", "dispreferred"}``: ``dispreferred`` is one answer or a
list of answers (more options); ``system`` (a system message) is optional; any other field
(``domain``, ``notes``...) is kept as metadata. In a CSV the columns are ``id, prompt, preferred,
dispreferred`` and optionally ``dispreferred_2``, ``dispreferred_3``...; ``source.columns`` maps
other column names onto these (``{prompt: question, preferred: chosen, dispreferred: rejected}``).
Every problem is a ``DataError`` naming the file and line (or the dataset row).
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any, Iterable

from ....io import DataError, iter_jsonl_numbered
from ..base import is_url
from ..common import BenchmarkUnavailable, load_hf_rows

FIELDS = ("id", "prompt", "preferred", "dispreferred")
_EXTRA_DISPREFERRED = re.compile(r"^dispreferred_(\d+)$")


def _text(row: dict, key: str, where: str) -> str:
    v = row.get(key)
    if not isinstance(v, str) or not v.strip():
        raise DataError(f"{where}: {key!r} must be a non-empty string, got {v!r}")
    return v


def check_item(row: Any, where: str, columns: dict | None = None) -> dict:
    """One validated item from a raw row (``columns`` maps our field names to the row's)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with {list(FIELDS)}, got {type(row).__name__}")
    cols = {f: f for f in FIELDS}
    cols.update({k: v for k, v in (columns or {}).items() if k in FIELDS or k == "system"})
    row = {**row, **{f: row.get(c) for f, c in cols.items() if c in row}}
    iid = row.get("id")
    if isinstance(iid, bool) or not isinstance(iid, (str, int)) or not str(iid).strip():
        raise DataError(f"{where}: 'id' must be a non-empty string or integer, got {iid!r}")
    prompt = _text(row, "prompt", where)
    preferred = _text(row, "preferred", where)
    disp = row.get("dispreferred")
    extra = sorted(((int(m.group(1)), k) for k in row if (m := _EXTRA_DISPREFERRED.match(k)) and row[k]))
    if isinstance(disp, str):
        disp = [disp] + [row[k] for _, k in extra]
    if not isinstance(disp, list) or not disp:
        raise DataError(f"{where}: 'dispreferred' must be a non-empty string or a list of them, got {disp!r}")
    for i, d in enumerate(disp):
        if not isinstance(d, str) or not d.strip():
            raise DataError(f"{where}: dispreferred[{i}] must be a non-empty string, got {d!r}")
    if any(d.strip() == preferred.strip() for d in disp):
        raise DataError(f"{where}: a dispreferred answer is the same as the preferred one")
    system = row.get("system")
    if system is not None and not isinstance(system, str):
        raise DataError(f"{where}: 'system' must be a string, got {system!r}")
    meta = {k: v for k, v in row.items() if k not in (*FIELDS, "system") and not _EXTRA_DISPREFERRED.match(k)
            and k not in (columns or {}).values()}
    return {"id": str(iid).strip(), "prompt": prompt, "preferred": preferred, "dispreferred": list(disp),
            "system": system, "meta": meta}


def _rows_jsonl(path: Path) -> Iterable[tuple[str, Any]]:
    for lineno, row in iter_jsonl_numbered(path):
        yield f"{path}:{lineno}", row


def _rows_json(path: Path) -> Iterable[tuple[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of items")
    for i, row in enumerate(data):
        yield f"{path}: item {i}", row


def _rows_csv(path: Path) -> Iterable[tuple[str, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise DataError(f"{path}: empty CSV (no header)")
        for row in reader:
            if None in row:
                raise DataError(f"{path}:{reader.line_num}: more cells than header columns")
            yield f"{path}:{reader.line_num}", {k: v for k, v in row.items() if v not in (None, "")}


def read_file(path: str | Path, columns: dict | None = None) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"probe source {str(p)!r} does not exist")
    reader = {".jsonl": _rows_jsonl, ".json": _rows_json, ".csv": _rows_csv}.get(p.suffix.lower())
    if reader is None:
        raise DataError(f"{p}: probe files are .jsonl, .json or .csv")
    return _checked(reader(p), columns, str(p))


def _checked(rows: Iterable[tuple[str, Any]], columns: dict | None, name: str) -> list[dict]:
    items: list[dict] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        it = check_item(row, where, columns)
        if it["id"] in seen:
            raise DataError(f"{where}: duplicate id {it['id']!r} (first at {seen[it['id']]})")
        seen[it["id"]] = where
        items.append(it)
    if not items:
        raise DataError(f"{name}: no probe items")
    return items


def load_items(bench_cfg: dict) -> list[dict]:
    """The benchmark's items in source order (the first ``max_items`` when set)."""
    src = bench_cfg.get("source") or {}
    columns = src.get("columns")
    if src.get("path") and not is_url(src["path"]):
        items = read_file(src["path"], columns)
    elif src.get("dataset"):
        rows = load_hf_rows(src["dataset"], src.get("revision"), src.get("split") or "train", src.get("config"),
                            data_files=src.get("data_files"))
        items = _checked(((f"{src['dataset']}@{src.get('revision')}: row {i + 1}", r) for i, r in enumerate(rows)),
                         columns, src["dataset"])
    elif src.get("path"):
        raise BenchmarkUnavailable(f"probe source {src['path']!r}: URLs are not read; download it and give the file")
    else:
        raise DataError("a probe benchmark needs source.path (a local .jsonl/.json/.csv) or source.dataset")
    limit = bench_cfg.get("max_items")
    return items[: int(limit)] if limit else items
