"""Seeded percentile bootstrap over items."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


def bootstrap_ci(values: Sequence[float], n_bootstrap: int = 1000, seed: int = 0, alpha: float = 0.05,
                 statistic: Callable[[np.ndarray], float] | None = None) -> tuple[float | None, float | None]:
    """Percentile bootstrap CI of a statistic (default: the mean) over items.

    Returns (None, None) when it cannot be estimated (fewer than 2 values or n_bootstrap < 1)."""
    x = np.asarray(list(values), dtype=float)
    if x.size < 2 or n_bootstrap < 1:
        return None, None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_bootstrap), x.size))
    if statistic is None:
        stats = x[idx].mean(axis=1)
    else:
        stats = np.array([statistic(x[row]) for row in idx], dtype=float)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return None, None
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_indices(n_items: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Resampled item indices, shape (n_bootstrap, n_items), for statistics over several arrays."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(int(n_bootstrap), n_items))


def percentile_ci(stats: Sequence[float], alpha: float = 0.05) -> tuple[float | None, float | None]:
    s = np.asarray([v for v in stats if v is not None and np.isfinite(v)], dtype=float)
    if s.size == 0:
        return None, None
    lo, hi = np.quantile(s, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)
