#!/usr/bin/env python3
"""Time the whole demo DAG from scratch in a temporary copy of the repository.

    python benchmarks/demo_timing.py [--config demo|tiny] [--cores 2] [--keep]

Prints the wall time, the goal on 2 cores as a ratio (demo, SmolLM2: 15 minutes; tiny, the random
test model: 10 minutes), and the time per rule from Snakemake's benchmark files
(runs/RUN/results/benchmarks/**.tsv, via doctune.workflow.timing)."""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOALS_S = {"demo": 900.0, "tiny": 600.0}


def copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=sorted(GOALS_S), default="demo")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="doctune-demo-"))
    copy_repo(work)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", f"config/{args.config}.yaml",
                           f"-c{args.cores}", "--quiet", "progress"], cwd=work, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"demo run failed (see {work})")
    sys.path.insert(0, str(REPO / "src"))
    from doctune.workflow.timing import format_times, rule_times

    per_rule = rule_times(work / "runs" / args.config / "results" / "benchmarks")
    goal = GOALS_S[args.config]
    print(f"{args.config} DAG: {sum(len(v) for v in per_rule.values())} jobs, wall {wall:.1f} s on "
          f"{args.cores} cores ({wall / goal:.2f} of the {goal:.0f} s goal)")
    print(format_times(per_rule))
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
