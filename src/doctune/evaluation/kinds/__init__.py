"""Benchmark kinds: one module per kind, one small interface (``base.BenchmarkKind``).

    from doctune.evaluation.kinds import get_kind
    kind = get_kind(bench_cfg["kind"])        # unknown name: ValueError with a "did you mean"
    kind.stage                                # "judge" | "logprob" | "lm_eval"
    kind.check(bench_cfg)                     # list of problems (dry-run preflight)

A new kind is one module here that defines ``KIND = SomeKind()`` (a ``BenchmarkKind``) plus its
name in ``_MODULES`` and in the ``kind`` enum of ``config/schema.yaml``. Modules are imported on
first use, so importing this package is cheap (no torch, no datasets).
"""
from __future__ import annotations

import importlib

from .base import STAGES, BenchmarkKind, Dataset, Verdict, did_you_mean  # noqa: F401

#: kind name -> module (under this package) that defines KIND
_MODULES = {
    "ahb": "ahb",
    "compassion": "compassion",
    "strongreject": "strongreject",
    "ai_risk": "ai_risk",
    "lm_eval": "lm_eval",
    "inspect": "inspect_task",
    "probe": "probe",
}
_LOADED: dict[str, BenchmarkKind] = {}


def register(name: str, module: str) -> None:
    """Add a kind defined in another module (``module`` is a full dotted path)."""
    _MODULES[name] = module
    _LOADED.pop(name, None)


def kind_names() -> list[str]:
    return list(_MODULES)


def get_kind(name: str | None) -> BenchmarkKind:
    if name not in _MODULES:
        raise ValueError(f"unknown benchmark kind {name!r} (known: {kind_names()})"
                         f"{did_you_mean(str(name), kind_names())}")
    if name not in _LOADED:
        mod = _MODULES[name]
        m = importlib.import_module(mod if "." in mod else f"{__name__}.{mod}")
        _LOADED[name] = m.KIND
    return _LOADED[name]


def kinds_of_stage(stage: str) -> list[str]:
    return [n for n in _MODULES if get_kind(n).stage == stage]


def judged_kinds() -> tuple[str, ...]:
    return tuple(kinds_of_stage("judge"))
