"""Loading benchmark items, whatever the kind: ``load_prompts(bench_cfg)`` gives the prompts the
evaluated model answers (judged kinds). Each kind's loader lives in its own module under
``doctune.evaluation.kinds``; the AHB-format helpers are re-exported here for older callers."""
from __future__ import annotations

from .kinds import get_kind
from .kinds.ahb import (combination_id, expand_combinations, is_english, load_dimensions,  # noqa: F401
                        parse_variables, variable_sets)
from .kinds.ahb import fill_all_placeholders as fill_placeholders  # noqa: F401
from .kinds.common import BenchmarkUnavailable  # noqa: F401
from .kinds.strongreject import load_strongreject  # noqa: F401


def load_prompts(bench_cfg: dict) -> list[dict]:
    """Prompts of a judged benchmark: ``[{"id": str, "prompt": str, ...}]`` in a stable order."""
    return get_kind(bench_cfg.get("kind")).prompts(bench_cfg)


def load_questions(bench_cfg: dict):
    """AHB-format questions and dimensions: ``(questions, dimensions)``."""
    data = get_kind(bench_cfg.get("kind") or "ahb").load(bench_cfg)
    return data.items, data.info["dimensions"]
