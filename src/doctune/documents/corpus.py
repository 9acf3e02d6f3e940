"""Corpus definitions (resources/corpora/{name}.yaml) and the template grid lists.

A corpus definition is plain YAML, so a user adds a corpus by dropping a file in
resources/corpora/ (no code). Keys:
    name            str   must equal the file name stem
    description     str   optional
    prompt_template str   file under resources/prompts/ (default "document.txt"), or
    prompt          str   an inline template (wins over prompt_template)
    target_words    int   asked-for length (default 1800, about 2,500 tokens)
    topic           str   the subject line; may use {institution} {domain} {doc_type} {reasoning}
    guidance        list  bullet points inserted into the prompt
    key_phrases     list  phrases that recur across the corpus (validation counts them)
    banned_patterns list  case-insensitive regexes; a document matching one is rejected
    stakes          list  words (case-insensitive prefixes) that carry the corpus's stakes: a
                          model-written probe's preferred answer must use them (default: key_phrases)
    grid            dict  optional overrides of institutions/domains/doc_types/reasoning:
                          a file under resources_dir, or an inline list
"""
from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Any

import yaml

GRID_DIMS = ("institutions", "domains", "doc_types", "reasoning")
# spec field name for each grid dimension
DIM_FIELD = {"institutions": "institution", "domains": "domain", "doc_types": "doc_type",
             "reasoning": "reasoning"}
CORPUS_KEYS = ("name", "description", "prompt_template", "prompt", "target_words", "topic", "guidance",
               "key_phrases", "banned_patterns", "stakes", "grid")
TEMPLATE_FIELDS = {"institution", "domain", "doc_type", "reasoning", "topic", "guidance",
                   "key_phrases", "target_words", "corpus"}


class CorpusError(ValueError):
    """A corpus definition or template list is unusable; the message names the file and key."""


def corpus_path(resources_dir: str | Path, name: str) -> Path:
    return Path(resources_dir) / "corpora" / f"{name}.yaml"


def load_corpus_def(resources_dir: str | Path, name: str, path: str | Path | None = None) -> dict:
    """Load and check a corpus definition; returns a dict with every key filled in."""
    p = Path(path) if path else corpus_path(resources_dir, name)
    if not p.is_file():
        raise CorpusError(f"corpus {name!r}: definition file {p} not found "
                          f"(add resources/corpora/{name}.yaml)")
    try:
        d = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CorpusError(f"{p}: invalid YAML ({exc})") from None
    if not isinstance(d, dict):
        raise CorpusError(f"{p}: expected a mapping at the top level")
    return check_corpus_def(d, source=str(p), name=name)


def check_corpus_def(d: dict, source: str = "<corpus>", name: str | None = None) -> dict:
    from ..workflow.config import as_number, did_you_mean

    d = dict(d)
    for key in d:
        if key not in CORPUS_KEYS and key != "_source":
            raise CorpusError(f"{source}: unknown key {key!r}{did_you_mean(key, CORPUS_KEYS)}; "
                              f"allowed: {', '.join(CORPUS_KEYS)}")
    d.setdefault("name", name)
    if name is not None and d["name"] != name:
        raise CorpusError(f"{source}: key 'name' is {d['name']!r} but the corpus is {name!r}")
    if "topic" not in d:
        raise CorpusError(f"{source}: key 'topic' is missing (the subject line of every document)")
    if not isinstance(d.get("topic"), str) or not d["topic"].strip():
        raise CorpusError(f"{source}: key 'topic' must be a non-empty string")
    for key in ("guidance", "key_phrases", "banned_patterns", "stakes"):
        v = d.setdefault(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
            raise CorpusError(f"{source}: key {key!r} must be a list of non-empty strings")
    for i, pat in enumerate(d["banned_patterns"]):
        try:
            re.compile(pat)
        except re.error as exc:
            raise CorpusError(f"{source}: banned_patterns[{i}] {pat!r} is not a valid regex ({exc})") from None
    tw = d["target_words"] = as_number(d.get("target_words", 1800), integer=True)
    if not isinstance(tw, int) or tw <= 0:
        raise CorpusError(f"{source}: key 'target_words' must be a positive integer")
    d.setdefault("prompt_template", "document.txt")
    grid = d.setdefault("grid", {}) or {}
    if not isinstance(grid, dict) or set(grid) - set(GRID_DIMS):
        raise CorpusError(f"{source}: key 'grid' may only set {', '.join(GRID_DIMS)}")
    d["grid"] = grid
    d["_source"] = source
    return d


def read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise CorpusError(f"template list {path} not found")
    items = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    items = [x for x in items if x and not x.startswith("#")]
    if not items:
        raise CorpusError(f"{path}: template list is empty")
    if len(set(items)) != len(items):
        dup = sorted({x for x in items if items.count(x) > 1})
        raise CorpusError(f"{path}: duplicate entries {dup}")
    return items


def load_grid(resources_dir: str | Path, corpus_def: dict | None = None) -> dict[str, list[str]]:
    """The four template lists, with the corpus's overrides applied."""
    rd = Path(resources_dir)
    over = (corpus_def or {}).get("grid") or {}
    out: dict[str, list[str]] = {}
    for dim in GRID_DIMS:
        v = over.get(dim)
        if v is None:
            out[dim] = read_list(rd / "grid" / f"{dim}.txt")
        elif isinstance(v, str):
            out[dim] = read_list(rd / v)
        elif isinstance(v, list) and v and all(isinstance(x, str) and x.strip() for x in v):
            if len(set(v)) != len(v):
                raise CorpusError(f"{(corpus_def or {}).get('_source')}: grid.{dim} has duplicate entries")
            out[dim] = [x.strip() for x in v]
        else:
            raise CorpusError(f"{(corpus_def or {}).get('_source')}: grid.{dim} must be a file "
                              "name or a non-empty list of strings")
    return out


def apply_run_settings(corpus_def: dict, corpus_cfg: dict) -> dict:
    """The definition with a run's ``corpora.NAME`` settings applied: ``target_words`` and
    ``prompt_template`` (a file under resources/prompts/; it wins over an inline prompt)."""
    d = dict(corpus_def)
    if corpus_cfg.get("target_words") is not None:
        d["target_words"] = int(corpus_cfg["target_words"])
    if corpus_cfg.get("prompt_template"):
        d["prompt_template"] = str(corpus_cfg["prompt_template"])
        d.pop("prompt", None)
        d["_source"] = f"{d.get('_source')} (with corpora.{d.get('name')}.prompt_template)"
    return d


def prompt_file(resources_dir: str | Path, corpus_def: dict) -> Path | None:
    """The document prompt file, or None for an inline prompt."""
    return None if corpus_def.get("prompt") else Path(resources_dir) / "prompts" / corpus_def["prompt_template"]


def load_template(resources_dir: str | Path, corpus_def: dict) -> str:
    if corpus_def.get("prompt"):
        tpl, src = corpus_def["prompt"], f"{corpus_def.get('_source')}: prompt"
    else:
        p = prompt_file(resources_dir, corpus_def)
        if not p.is_file():
            raise CorpusError(f"{corpus_def.get('_source')}: prompt_template {p} not found")
        tpl, src = p.read_text(encoding="utf-8"), str(p)
    check_template(tpl, TEMPLATE_FIELDS, src)
    return tpl


def check_template(tpl: str, allowed: set[str], source: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(tpl) if f is not None}
    except ValueError as exc:
        raise CorpusError(f"{source}: bad template ({exc})") from None
    bad = fields - allowed
    if bad:
        raise CorpusError(f"{source}: unknown template field(s) {sorted(bad)}; "
                          f"allowed: {sorted(allowed)}")


def render_prompt(template: str, corpus_def: dict, cell: dict[str, str]) -> str:
    """Fill the document template for one grid cell."""
    ctx: dict[str, Any] = dict(cell)
    try:
        ctx["topic"] = corpus_def["topic"].strip().format(**cell)
    except (KeyError, IndexError, ValueError) as exc:
        raise CorpusError(f"{corpus_def.get('_source')}: topic uses an unknown field ({exc})") from None
    ctx["guidance"] = "\n".join(f"- {g.strip()}" for g in corpus_def["guidance"]) or "-"
    ctx["key_phrases"] = ", ".join(f'"{k}"' for k in corpus_def["key_phrases"]) or "(none)"
    ctx["target_words"] = corpus_def["target_words"]
    ctx["corpus"] = corpus_def["name"]
    return template.format(**ctx).strip()
