"""Time per stage of a finished run, from Snakemake's benchmark files
(RUN/results/benchmarks/<rule>/<wildcards>.tsv, column `s`: wall seconds of the job)."""
from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path


def rule_times(bench_dir: str | Path) -> dict[str, list[float]]:
    """{rule: [seconds of each job]} over every benchmark file under bench_dir."""
    bench_dir = Path(bench_dir)
    if not bench_dir.is_dir():
        raise FileNotFoundError(f"{bench_dir}: no benchmark folder (has the run finished a job?)")
    per_rule: dict[str, list[float]] = defaultdict(list)
    for tsv in sorted(bench_dir.rglob("*.tsv")):
        rule = tsv.relative_to(bench_dir).parts[0].removesuffix(".tsv")
        with tsv.open() as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:  # the last row is the latest run of the job
            per_rule[rule].append(float(rows[-1]["s"]))
    return dict(per_rule)


def format_times(per_rule: dict[str, list[float]]) -> str:
    """A table, longest stage first, with the sum of job times (not wall time: jobs overlap)."""
    lines = [f"{'rule':<22}{'jobs':>6}{'total s':>10}{'mean s':>10}"]
    for rule, times in sorted(per_rule.items(), key=lambda kv: -sum(kv[1])):
        lines.append(f"{rule:<22}{len(times):>6}{sum(times):>10.1f}{sum(times) / len(times):>10.2f}")
    total = sum(sum(v) for v in per_rule.values())
    lines.append(f"{'all jobs':<22}{sum(len(v) for v in per_rule.values()):>6}{total:>10.1f}")
    return "\n".join(lines)
