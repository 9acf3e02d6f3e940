"""Standard fine-tuning samples for post-training (robustness of each arm to later fine-tuning).

`write_posttrain(source_cfg, n, seed, out)` writes n chat examples drawn in a fixed seeded order
from a general instruction data set, so that for the same source and seed the n=2500 sample is
exactly the first 2500 rows of the n=5000 sample.

source_cfg: {"path": local .json (a list) or .jsonl file, "format": "alpaca" | "messages"}
         or {"dataset": HF dataset id, "revision": ..., "split": "train", "format": ..., "name": ...}
format "alpaca": records {"instruction", "input" (optional, may be empty), "output"};
format "messages": records {"messages": [{"role", "content"}, ...]} with at least one assistant turn.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ..io import DataError, iter_jsonl, read_json, write_jsonl

FORMATS = ("alpaca", "messages")


def _load_records(source_cfg: dict) -> tuple[list[dict], str]:
    """(records, a label naming the source for error messages)."""
    if "path" in source_cfg and source_cfg["path"]:
        path = Path(source_cfg["path"])
        if not path.is_file():
            raise DataError(f"posttrain_data.source.path: {path} not found")
        if path.suffix == ".jsonl":
            return list(iter_jsonl(path)), str(path)
        obj = read_json(path)
        if isinstance(obj, dict) and isinstance(obj.get("data"), list):
            obj = obj["data"]
        if not isinstance(obj, list):
            raise DataError(f"{path}: expected a JSON list of records")
        return obj, str(path)
    if source_cfg.get("dataset"):
        try:
            import datasets
        except ImportError as exc:  # pragma: no cover
            raise DataError("posttrain_data.source.dataset needs the `datasets` package") from exc
        label = f"{source_cfg['dataset']}@{source_cfg.get('revision') or 'main'}[{source_cfg.get('split') or 'train'}]"
        try:
            ds = datasets.load_dataset(source_cfg["dataset"], source_cfg.get("name"),
                                       revision=source_cfg.get("revision"), split=source_cfg.get("split") or "train")
        except Exception as exc:  # noqa: BLE001 - offline, gated, unreachable: the post-trained models
            # are missing (DataUnavailable); a wrong split or name, or any other failure, fails the job
            from ..workflow.hub import dataset_failure

            name = f" (name={source_cfg['name']!r})" if source_cfg.get("name") else ""
            raise dataset_failure(exc, f"posttrain_data.source.dataset: {label}{name}") from exc
        return [dict(r) for r in ds], label
    raise DataError("posttrain_data.source: give either 'path' (a local JSON/JSONL file) or 'dataset' (a HF id)")


def to_messages(rec: Any, fmt: str, where: str) -> list[dict]:
    """One source record as [user, assistant] (alpaca) or its validated messages list."""
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected an object, got {type(rec).__name__}")
    if fmt == "alpaca":
        for key in ("instruction", "output"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise DataError(f"{where}: key '{key}' missing or empty")
        inp = rec.get("input", "")
        if inp is None:
            inp = ""
        if not isinstance(inp, str):
            raise DataError(f"{where}: key 'input' must be a string")
        user = rec["instruction"].strip() + ("\n\n" + inp.strip() if inp.strip() else "")
        return [{"role": "user", "content": user}, {"role": "assistant", "content": rec["output"].strip()}]
    msgs = rec.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: key 'messages' missing or not a non-empty list")
    out = []
    for j, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: messages[{j}] needs role system/user/assistant and string content")
        out.append({"role": m["role"], "content": m["content"]})
    if out[-1]["role"] != "assistant" or not out[-1]["content"].strip():
        raise DataError(f"{where}: the last message must be a non-empty assistant reply")
    return out


def sample_order(n_records: int, seed: int) -> list[int]:
    """A fixed seeded permutation of all record indices; every sample size takes a prefix of it."""
    order = list(range(n_records))
    random.Random(f"posttrain:{seed}").shuffle(order)
    return order


def write_posttrain(source_cfg: dict, n: int, seed: int, out: str) -> int:
    """Write the first n records of the seeded order as chat rows {"id", "messages"}; returns n."""
    fmt = source_cfg.get("format", "alpaca")
    if fmt not in FORMATS:
        raise DataError(f"posttrain_data.source.format: {fmt!r} is not one of {FORMATS}")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise DataError(f"posttrain sample size must be a positive integer, got {n!r}")
    records, label = _load_records(source_cfg)
    if n > len(records):
        raise DataError(f"{label}: asked for {n} post-training samples but the source has only {len(records)} records")
    rows = []
    for i in sample_order(len(records), seed)[:n]:
        rid = records[i].get("id") if isinstance(records[i], dict) else None
        rows.append({"id": str(rid) if rid is not None else f"posttrain-{i}",
                     "messages": to_messages(records[i], fmt, f"{label}: record {i}")})
    write_jsonl(out, rows)
    return len(rows)
