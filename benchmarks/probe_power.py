"""Power of the manipulation check's paired comparison of probe margins, before a run is paid for.

For n probe items whose per-item differences (arm minus control, nats/token) have standard
deviation SD, the mean difference is tested with the project's paired sign-flip permutation test
(doctune.analysis.stats.paired_permutation_p). Prints, for each n: the analytic normal-approximation power
and minimum detectable effect at 80% power, and the power from a simulation (normal per-item
differences with the given mean and SD, the permutation test run on each), at the plain alpha and
at alpha / FAMILY (Bonferroni: a lower bound on the Holm power of the check's four comparisons).

    python benchmarks/probe_power.py --sd 0.16 --effect 0.05 --n 60 120 --sims 400

The defaults are the pilot of issue 22 (SmolLM2-135M, the demo documents, 20 optimizer steps):
doc minus control +0.051 nats/token on 40 held-out welfare items, per-item SD about 0.16.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from doctune.analysis.stats import paired_permutation_p  # noqa: E402


def analytic(n: int, sd: float, effect: float, alpha: float) -> tuple[float, float]:
    """(power, minimum detectable effect at 80% power), two-sided normal approximation."""
    z = sps.norm.ppf(1 - alpha / 2)
    se = sd / math.sqrt(n)
    power = sps.norm.cdf(effect / se - z) + sps.norm.cdf(-effect / se - z)
    return float(power), float((z + sps.norm.ppf(0.8)) * se)


def simulated(n: int, sd: float, effect: float, alphas: list[float], sims: int, perms: int, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    hits = np.zeros(len(alphas))
    for _ in range(sims):
        d = rng.normal(effect, sd, size=n)
        p, _ = paired_permutation_p(d, perms, 16, rng)
        hits += np.array([p < a for a in alphas])
    return list(hits / sims)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sd", type=float, default=0.16, help="SD of per-item differences (nats/token)")
    ap.add_argument("--effect", type=float, default=0.05, help="true mean difference to detect (nats/token)")
    ap.add_argument("--n", type=int, nargs="+", default=[40, 60, 80, 120], help="probe items")
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--family", type=int, default=4, help="comparisons Holm corrects together")
    ap.add_argument("--sims", type=int, default=400)
    ap.add_argument("--perms", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    alphas = [a.alpha, a.alpha / a.family]
    print(f"per-item SD {a.sd}, effect {a.effect} nats/token, alpha {a.alpha} (and {alphas[1]:.4g} = alpha/{a.family}); "
          f"{a.sims} simulations x {a.perms} sign flips")
    print(f"{'n':>5} {'power':>8} {'MDE80':>8} {'sim':>8} | {'power/k':>8} {'MDE80/k':>8} {'sim/k':>8}")
    for n in a.n:
        p1, m1 = analytic(n, a.sd, a.effect, alphas[0])
        p2, m2 = analytic(n, a.sd, a.effect, alphas[1])
        s1, s2 = simulated(n, a.sd, a.effect, alphas, a.sims, a.perms, a.seed + n)
        print(f"{n:5d} {p1:8.3f} {m1:8.4f} {s1:8.3f} | {p2:8.3f} {m2:8.4f} {s2:8.3f}")


if __name__ == "__main__":
    main()
