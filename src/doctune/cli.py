"""The ``doctune`` command line.

    doctune trace runs/demo/results/summary.tsv   # provenance chain of a result, link by link
    doctune trace FILE --json                # the same as JSON
    doctune trace FILE --strict              # exit 1 if any link is not current
    doctune trace FILE --depth 2             # only the last two steps
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
    return parser


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
