"""The ``doctune`` command line.

    doctune trace runs/demo/results/summary.tsv   # provenance chain of a result, link by link
    doctune trace FILE --json                # the same as JSON
    doctune trace FILE --strict              # exit 1 if any link is not current
    doctune trace FILE --depth 2             # only the last two steps
    doctune plan config/config.yaml          # API cost, GPU-hours and detectable differences, before paying
    doctune plan CONFIG --pilot runs/demo    # the same with a pilot run's measurements
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__


def _print(text: str) -> None:
    """Print, stopping quietly when the reader has gone (`doctune trace ... | head`)."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # no more output can go anywhere; point stdout at devnull so the exit flush is silent
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _trace(args: argparse.Namespace) -> int:
    from .workflow.provenance import format_trace, iter_links, trace

    if not Path(args.file).exists():
        msg = f"doctune trace: {args.file} does not exist"
        runs = sorted(Path("runs").glob(f"*/{args.file}")) if not Path(args.file).is_absolute() else []
        if runs:
            msg += "; each run writes under runs/RUN_NAME/, did you mean " + " or ".join(map(str, runs)) + "?"
        print(msg, file=sys.stderr)
        return 2
    if args.depth is not None and args.depth < 0:
        print("doctune trace: --depth must be 0 or more", file=sys.stderr)
        return 2
    tree = trace(args.file, root=args.root, max_depth=args.depth)
    _print(json.dumps(tree, indent=2) if args.json else format_trace(tree))
    if args.strict and any(n["status"] != "current" for _, n in iter_links(tree)):
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="doctune",
        description="doctune: a reproducible document-tuning research pipeline. The pipeline "
                    "itself runs with `snakemake` (see README); this command inspects its outputs.")
    parser.add_argument("--version", action="version", version=f"doctune {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "trace", help="print the chain of rules and inputs behind a result file",
        description="Follow a result's provenance sidecar (results/provenance/<path>.json) and, "
                    "recursively, those of its inputs back to the first step (the template grid "
                    "and source files). For each link it prints the rule, the recorded and "
                    "current sha256 and whether the file is current, stale (changed since it was "
                    "recorded), missing, or has no record. Each file's inputs are shown once; a "
                    "later link to the same file points back to its number (#N).")
    p.add_argument("file", help="a file or directory under results/")
    p.add_argument("--root", default=None,
                   help="directory that recorded paths are relative to (default: the parent of "
                        "the 'results' folder in FILE's path, else the working directory)")
    p.add_argument("--depth", type=int, default=None, metavar="N",
                   help="follow at most N links back from FILE (default: all the way)")
    p.add_argument("--json", action="store_true", help="print the tree as JSON")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 if any link is not current")
    p.set_defaults(func=_trace)
    p = sub.add_parser(
        "times", help="print the time per stage of a run (from its benchmark files)",
        description="Sum the wall seconds Snakemake's benchmark files recorded for each rule of a "
                    "run (RUN/results/benchmarks/); job times overlap when jobs run in parallel.")
    p.add_argument("run", nargs="?", default=".", help="the run folder, e.g. runs/demo (default: .)")
    p.set_defaults(func=_times)
    p = sub.add_parser(
        "plan", help="print what a config will cost and what it can detect, before anything runs",
        description="Per stage: API requests, tokens and cost at the config's prices (documents, "
                    "instruction data, model-written probes, judge calls, the judge gate); GPU-hours of "
                    "training and evaluation; and for every primary comparison the minimum detectable "
                    "difference at stats.alpha and plan.power. Each number says where it comes from: the "
                    "config, a local file, a pilot run's measurement (--pilot) or an assumption (a plan.* "
                    "config key). Nothing is called or written. Formulas: docs/PLAN.md.")
    p.add_argument("config", help="a config file, e.g. config/config.yaml (paths in it are relative to the "
                                  "working directory, as for snakemake)")
    p.add_argument("--pilot", default=None, metavar="RUN",
                   help="a run folder (runs/NAME) whose measurements replace the assumptions they cover: "
                        "per-job timings, train_metrics.jsonl tokens/s, documents/probes/instruct reports, "
                        "judge ledgers, completions, per-item scores")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=_plan)
    return parser


def _plan(args) -> int:
    from .workflow.config import ConfigError, load_yaml, validate_config
    from .workflow.plan import build_plan, format_plan

    path = Path(args.config)
    if not path.is_file():
        print(f"doctune plan: {path} does not exist", file=sys.stderr)
        return 2
    try:
        cfg = validate_config(load_yaml(path.read_text(encoding="utf-8")) or {})
    except ConfigError as exc:
        print(f"doctune plan: {path}: {exc}", file=sys.stderr)
        return 2
    try:
        plan = build_plan(cfg, args.pilot)
    except FileNotFoundError as exc:
        print(f"doctune plan: {exc}", file=sys.stderr)
        return 2
    _print(json.dumps(plan, indent=2, default=str) if args.json else format_plan(plan, str(path)).rstrip("\n"))
    return 0


def _times(args) -> int:
    from .workflow.timing import format_times, rule_times

    try:
        print(format_times(rule_times(Path(args.run) / "results" / "benchmarks")))
    except FileNotFoundError as exc:
        print(f"doctune times: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
