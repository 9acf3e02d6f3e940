#!/usr/bin/env python3
"""Time the whole demo DAG from scratch in a temporary copy of the repository.

    python benchmarks/demo_timing.py [--cores 2] [--keep]

Prints the wall time, the goal (10 minutes on 2 cores) as a ratio, and the time per rule from
Snakemake's benchmark files (runs/tiny/results/benchmarks/**.tsv)."""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 600.0


def copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary run directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="doctune-demo-"))
    copy_repo(work)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/tiny.yaml",
                           f"-c{args.cores}", "--quiet", "progress"], cwd=work, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"demo run failed (see {work})")
    per_rule: dict[str, list[float]] = defaultdict(list)
    bench_dir = work / "runs" / "demo" / "results" / "benchmarks"
    if not bench_dir.is_dir():  # a checkout from before runs/RUN_NAME/
        bench_dir = work / "results" / "benchmarks"
    for tsv in bench_dir.rglob("*.tsv"):
        rule = tsv.relative_to(bench_dir).parts[0].removesuffix(".tsv")
        with tsv.open() as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                per_rule[rule].append(float(row["s"]))
    jobs = sum(len(v) for v in per_rule.values())
    print(f"demo DAG: {jobs} jobs, wall {wall:.1f} s on {args.cores} cores "
          f"({wall / GOAL_S:.2f} of the 600 s goal)")
    print(f"{'rule':<20}{'jobs':>6}{'total s':>10}{'mean s':>10}")
    for rule, times in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        print(f"{rule:<20}{len(times):>6}{sum(times):>10.1f}{sum(times) / len(times):>10.2f}")
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
