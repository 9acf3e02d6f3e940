"""Benchmark kinds: one self-contained folder each, found by this registry (there is no central
list of kinds anywhere else).

    kinds/NAME/__init__.py   KIND = SomeKind(), a ``base.BenchmarkKind``: loader, units, prompts,
                             parser, metrics, its plan (``plan``/``scored_units``: the
                             completeness audit), display metadata (name, metric labels, per
                             dimension or not, rating criteria) and preflight checks
    kinds/NAME/schema.yaml   the kind's own config keys: merged into config/schema.yaml's benchmark
                             entry for the benchmarks of this kind (``kind_schema``)
    kinds/NAME/prompts/      the kind's prompt templates (judged kinds), reference wording included

    from . import get_kind
    kind = get_kind(bench_cfg["kind"])        # unknown name: ValueError with a "did you mean"
    kind.stage                                # "judge" | "logprob" | "lm_eval" | "inspect"
    kind.check(bench_cfg)                     # list of problems (dry-run preflight)

Adding a kind is adding its folder (plus a config entry and its tests). A kind is imported only when
``get_kind`` asks for it, so a run imports the kinds its benchmarks use and no other, and importing
this package is cheap (no torch, no datasets). ``register`` adds a kind defined elsewhere.
"""
from __future__ import annotations

import importlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from .base import STAGES, BenchmarkKind, Dataset, Verdict  # noqa: F401  (the interface, re-exported)

ROOT = Path(__file__).resolve().parent
_EXTRA: dict[str, str] = {}          # kinds registered from other packages: name -> dotted module
_LOADED: dict[str, BenchmarkKind] = {}


def register(name: str, module: str) -> None:
    """Add a kind defined in another module (``module`` is a full dotted path; its folder may hold a
    schema.yaml and prompts/ like the kinds here)."""
    _EXTRA[name] = module
    _LOADED.pop(name, None)
    kind_schema.cache_clear()


def kind_names() -> list[str]:
    """Every kind: the folders here that hold an ``__init__.py``, then registered ones."""
    here = sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
                  and not p.name.startswith("_"))
    return here + [n for n in _EXTRA if n not in here]


def kind_dir(name: str) -> Path:
    """The kind's folder (its schema.yaml and prompts/ live there)."""
    if name in _EXTRA:
        spec = importlib.util.find_spec(_EXTRA[name])
        if spec is None or not spec.origin:
            raise ValueError(f"benchmark kind {name!r}: module {_EXTRA[name]!r} cannot be found")
        return Path(spec.origin).parent
    return ROOT / name


def _unknown(name) -> ValueError:
    from ...workflow.config import did_you_mean

    return ValueError(f"unknown benchmark kind {name!r} (known: {kind_names()}){did_you_mean(str(name), kind_names())}")


def get_kind(name: str | None) -> BenchmarkKind:
    if name not in _LOADED:
        if name not in kind_names():
            raise _unknown(name)
        # (an f-string on __name__: doctune.workflow.codedeps follows it into this package's kinds)
        _LOADED[name] = importlib.import_module(_EXTRA[name] if name in _EXTRA else f"{__name__}.{name}").KIND
    return _LOADED[name]


@lru_cache(maxsize=None)
def kind_schema(name: str) -> dict:
    """The kind's own config keys (``{"properties": {...}}`` of its schema.yaml; {} without one),
    read without importing the kind."""
    if name not in kind_names():
        raise _unknown(name)
    p = kind_dir(name) / "schema.yaml"
    if not p.is_file():
        return {}
    from ...workflow.config import load_yaml

    doc = load_yaml(p.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("properties", {}), dict):
        raise ValueError(f"{p}: a kind's schema.yaml holds a mapping with 'properties'")
    return doc


def stage_of(bench_cfg: dict) -> str:
    """The stage (rule) that scores a benchmark: its kind's ``stage``."""
    return get_kind(bench_cfg.get("kind")).stage
