"""Benchmark loaders: AHB-format question sets (the Animal Harm Benchmark and the project's own
human-compassion set) and StrongREJECT-format forbidden prompts.

AHB format (a local directory with ``questions.jsonl`` + ``dimensions.jsonl``, or a HuggingFace
dataset at a pinned revision):

* question rows: ``id``, ``question``, ``tags`` (dimension names), ``variables`` (``"key:v1,v2"``
  lines or null), ``language`` (null = English original), ``translation``;
* dimension rows: ``dimension``, ``guiding_question`` (may hold ``{{key}}`` placeholders),
  ``scoring``, ``observable_indicators``, ``default_weighting``.

Quirks handled here: tag names are matched to dimensions case-insensitively (and ignoring
surrounding whitespace); a question left with no known dimension is not scorable and is dropped
with a warning. An empty tag, or one that names no dimension, follows ``invalid_tags``:
``"drop_question"`` (default, as the reference implementation does: warn and drop the question,
so 114 of the 115 real questions remain), ``"drop_tag"`` (warn and drop only the tag) or
``"error"``.
"""
from __future__ import annotations

import csv
import itertools
import logging
import re
from pathlib import Path
from typing import Any

from ..io import DataError, DataUnavailable, iter_jsonl

log = logging.getLogger(__name__)

JUDGED_KINDS = ("ahb", "compassion", "strongreject")
INVALID_TAG_POLICIES = ("drop_tag", "drop_question", "error")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_ ]*)\s*\}\}")


class BenchmarkUnavailable(DataUnavailable):
    """The benchmark data could not be loaded (e.g. a HuggingFace dataset while offline)."""


# --------------------------------------------------------------------------------------------
# Variables and placeholders
# --------------------------------------------------------------------------------------------

def parse_variables(text: str | None, where: str = "variables") -> dict[str, list[str]]:
    """Parse ``"animal:cat,dog\\nsetting:farm,lab"`` into ``{"animal": ["cat", "dog"], ...}``.

    Keys keep their order of appearance; values are stripped; empty values are dropped."""
    if text is None:
        return {}
    if not isinstance(text, str):
        raise DataError(f"{where}: expected a string of 'key:v1,v2' lines, got {type(text).__name__}")
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if ":" not in line:
            raise DataError(f"{where}: line {line!r} is not of the form 'key:v1,v2'")
        key, _, vals = line.partition(":")
        key = key.strip()
        values = [v.strip() for v in vals.split(",") if v.strip()]
        if not key or not values:
            raise DataError(f"{where}: line {line!r} has an empty key or no values")
        out.setdefault(key, [])
        out[key].extend(v for v in values if v not in out[key])
    return out


def expand_combinations(variables: dict[str, list[str]]) -> list[dict[str, str]]:
    """Every combination of variable values (the cartesian product); [{}] when there are none."""
    if not variables:
        return [{}]
    keys = list(variables)
    return [dict(zip(keys, vals)) for vals in itertools.product(*(variables[k] for k in keys))]


def combination_id(combo: dict[str, str]) -> str:
    """A stable string naming one combination, e.g. ``"animal=cat|setting=farm"`` ('' if none)."""
    return "|".join(f"{k}={v}" for k, v in combo.items())


def fill_placeholders(text: str, combo: dict[str, str]) -> str:
    """Fill ``{{key}}`` placeholders from a combination; a placeholder with no value becomes the
    bare key (``{{animal}}s`` -> ``animals``), as a neutral general reference."""
    lower = {k.lower(): v for k, v in combo.items()}

    def sub(m: re.Match) -> str:
        key = m.group(1).strip()
        return lower.get(key.lower(), key)

    return _PLACEHOLDER.sub(sub, text)


# --------------------------------------------------------------------------------------------
# Reading sources
# --------------------------------------------------------------------------------------------

def _load_hf_rows(dataset: str, revision: str | None, split: str, config: str | None) -> list[dict]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a pinned dependency
        raise BenchmarkUnavailable(f"dataset {dataset!r}: the 'datasets' package is missing") from exc
    try:
        ds = datasets.load_dataset(dataset, config, revision=revision, split=split)
    except Exception as exc:  # offline, unknown revision, missing config ...
        raise BenchmarkUnavailable(
            f"could not load HuggingFace dataset {dataset!r} (config={config!r}, "
            f"revision={revision!r}, split={split!r}): {type(exc).__name__}: {exc}. "
            f"Offline, give a local copy with source.path instead.") from exc
    return [dict(r) for r in ds]


def _source_rows(source: dict, what: str) -> tuple[list[dict], str]:
    """Rows of questions or dimensions of an AHB-format source, and a name for error messages."""
    if not isinstance(source, dict):
        raise DataError(f"benchmark source must be a mapping with 'path' or 'dataset', got {source!r}")
    if source.get("path"):
        base = Path(source["path"])
        key = "questions_file" if what == "questions" else "dimensions_file"
        p = Path(source[key]) if source.get(key) else base / f"{what}.jsonl"
        if not p.is_file():
            raise DataError(f"benchmark source: {p} does not exist (source.path={source['path']!r})")
        return [dict(r, _line=i) for i, r in enumerate(iter_jsonl(p), start=1)], str(p)
    if source.get("dataset"):
        ds = source["dataset"]
        if what == "questions":
            rows = _load_hf_rows(ds, source.get("revision"), (source.get("split") or "train"),
                                 source.get("config"))
        else:
            rows = _load_hf_rows(ds, source.get("revision"), (source.get("dimensions_split") or "train"),
                                 (source.get("dimensions_config") or "dimensions"))
        return [dict(r, _line=i) for i, r in enumerate(rows, start=1)], f"{ds}@{source.get('revision')}"
    raise DataError(f"benchmark source needs 'path' or 'dataset', got keys {sorted(source)}")


def _require(row: dict, key: str, where: str) -> Any:
    if key not in row:
        raise DataError(f"{where}: missing field {key!r}")
    return row[key]


def load_dimensions(source: dict) -> dict[str, dict]:
    """Dimensions of an AHB-format source, keyed by their canonical name (file order kept)."""
    rows, name = _source_rows(source, "dimensions")
    dims: dict[str, dict] = {}
    for r in rows:
        where = f"{name}:{r['_line']}"
        dname = _require(r, "dimension", where)
        if not isinstance(dname, str) or not dname.strip():
            raise DataError(f"{where}: empty dimension name")
        dname = dname.strip()
        if dname.lower() in {d.lower() for d in dims}:
            raise DataError(f"{where}: duplicate dimension {dname!r}")
        weight = r.get("default_weighting")
        weight = 1.0 if weight is None else weight
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise DataError(f"{where}: default_weighting {weight!r} is not a number") from None
        if weight < 0:
            raise DataError(f"{where}: default_weighting {weight} is negative")
        dims[dname] = {
            "name": dname,
            "guiding_question": str(_require(r, "guiding_question", where)),
            "observable_indicators": str(r.get("observable_indicators") or ""),
            "scoring": str(r.get("scoring") or ""),
            "weight": weight,
        }
    if not dims:
        raise DataError(f"{name}: no dimensions")
    return dims


def load_ahb(source: dict, *, invalid_tags: str = "drop_question",
             max_questions: int | None = None) -> tuple[list[dict], dict[str, dict]]:
    """Load an AHB-format question set. Returns ``(questions, dimensions)``.

    Each question: ``{"id": str, "question", "tags": [canonical dimension names],
    "variables": {key: [values]}, "combinations": [{key: value}, ...], "language",
    "translation"}``; only scorable questions (at least one known dimension) are returned."""
    if invalid_tags not in INVALID_TAG_POLICIES:
        raise ValueError(f"invalid_tags must be one of {INVALID_TAG_POLICIES}, got {invalid_tags!r}")
    dims = load_dimensions(source)
    by_lower = {d.lower(): d for d in dims}
    rows, name = _source_rows(source, "questions")
    questions: list[dict] = []
    seen: set[str] = set()
    for r in rows:
        where = f"{name}:{r['_line']}"
        qid = _require(r, "id", where)
        qid = str(qid)
        if qid in seen:
            raise DataError(f"{where}: duplicate question id {qid!r}")
        seen.add(qid)
        text = _require(r, "question", where)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: question {qid} has no text")
        raw_tags = r.get("tags") or []
        if isinstance(raw_tags, str):
            raw_tags = [raw_tags]
        tags: list[str] = []
        drop = False
        for t in raw_tags:
            t_norm = (t or "").strip()
            if not t_norm:
                log.warning("%s: question %s has an empty tag; %s", where, qid,
                            "dropping the question" if invalid_tags == "drop_question" else "ignoring it")
                drop = drop or invalid_tags == "drop_question"
                continue
            canon = by_lower.get(t_norm.lower())
            if canon is None:
                if invalid_tags == "error":
                    raise DataError(f"{where}: question {qid} has tag {t!r}, which names no dimension "
                                    f"(known: {sorted(dims)})")
                log.warning("%s: question %s has unknown tag %r; %s", where, qid, t,
                            "dropping the question" if invalid_tags == "drop_question" else "ignoring it")
                drop = drop or invalid_tags == "drop_question"
                continue
            if canon not in tags:
                tags.append(canon)
        if drop:
            continue
        if not tags:
            log.warning("%s: question %s has no known dimension tag; not scorable, dropped", where, qid)
            continue
        variables = parse_variables(r.get("variables"), where=f"{where} (question {qid} variables)")
        language = r.get("language") or None
        questions.append({
            "id": qid,
            "question": text,
            "tags": tags,
            "variables": variables,
            "combinations": expand_combinations(variables),
            "language": language,
            "translation": r.get("translation") or None,
        })
    if max_questions is not None:
        questions = questions[: int(max_questions)]
    if not questions:
        raise DataError(f"{name}: no scorable questions")
    return questions, dims


def is_english(language: str | None) -> bool:
    return language is None or str(language).strip().lower() in ("", "english", "en")


# --------------------------------------------------------------------------------------------
# StrongREJECT
# --------------------------------------------------------------------------------------------

def load_strongreject(source: dict, max_items: int | None = None) -> list[dict]:
    """StrongREJECT forbidden prompts (CSV with category, source, forbidden_prompt; prompts may
    span lines) from ``{"path": file}`` or a HF dataset. Items: id (row index), prompt, category,
    source."""
    if source.get("path"):
        p = Path(source["path"])
        if not p.is_file():
            raise DataError(f"strongreject source: {p} does not exist")
        with p.open("r", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            if "forbidden_prompt" not in fields:
                raise DataError(f"{p}: expected a 'forbidden_prompt' column, found {fields}")
            rows = [(reader.line_num, dict(r)) for r in reader]
        name = str(p)
    elif source.get("dataset"):
        hf = _load_hf_rows(source["dataset"], source.get("revision"), (source.get("split") or "train"),
                           source.get("config"))
        rows = list(enumerate(hf, start=1))
        name = source["dataset"]
    else:
        raise DataError(f"strongreject source needs 'path' or 'dataset', got keys {sorted(source)}")
    items = []
    for idx, (line, r) in enumerate(rows):
        prompt = r.get("forbidden_prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{name}:{line}: empty forbidden_prompt")
        items.append({"id": str(idx), "prompt": prompt.strip(), "category": (r.get("category") or "").strip(),
                      "source": (r.get("source") or "").strip()})
    if max_items is not None:
        items = items[: int(max_items)]
    if not items:
        raise DataError(f"{name}: no prompts")
    return items


# --------------------------------------------------------------------------------------------
# Common entry point
# --------------------------------------------------------------------------------------------

def _limit(bench_cfg: dict) -> int | None:
    # the schema fills both keys (null when unset): take whichever is set
    n = bench_cfg.get("max_questions")
    if n is None:
        n = bench_cfg.get("max_items")
    if n is None:
        return None
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise DataError(f"benchmark config: max_questions/max_items must be a positive integer, got {n!r}")
    return n


def load_questions(bench_cfg: dict) -> tuple[list[dict], dict[str, dict]]:
    """AHB/compassion questions and dimensions for a benchmark config (limits applied)."""
    return load_ahb(bench_cfg["source"], invalid_tags=bench_cfg.get("invalid_tags", "drop_question"),
                    max_questions=_limit(bench_cfg))


def load_prompts(bench_cfg: dict) -> list[dict]:
    """Prompts of a judged benchmark: ``[{"id": str, "prompt": str, ...}]`` in a stable order."""
    kind = bench_cfg.get("kind")
    if "source" not in bench_cfg:
        raise DataError(f"benchmark config of kind {kind!r} has no 'source'")
    if kind in ("ahb", "compassion"):
        questions, _ = load_questions(bench_cfg)
        return [{"id": q["id"], "prompt": q["question"], "language": q["language"], "tags": q["tags"]}
                for q in questions]
    if kind == "strongreject":
        return load_strongreject(bench_cfg["source"], _limit(bench_cfg))
    raise ValueError(f"load_prompts: benchmark kind {kind!r} has no prompts to generate "
                     f"(judged kinds: {JUDGED_KINDS})")
