"""Stale Snakemake locks: a run killed with SIGKILL (or whose machine died) leaves its locks in
``.snakemake/locks/``, and Snakemake then refuses every later run until ``--unlock``. The README
promises that running the same command again is enough, so the workflow removes locks that no
living Snakemake process holds.

Each main Snakemake process that parses the Snakefile registers itself in
``.snakemake/doctune-runs/`` (host, pid, process start time). At parse time, before Snakemake
takes its locks, the records of processes that are gone are pruned (a pid reused by another
process does not count: its start time differs); when lock files exist and no registered
process is alive, they were left by a killed run and are removed, with one line saying so.
A record from another host cannot be checked and counts as alive, so a run on a shared
filesystem never removes the locks of a run elsewhere (``--unlock`` is then the way).
"""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(rec: dict) -> bool:
    if rec.get("host") != socket.gethostname():
        return True
    pid = int(rec.get("pid", 0))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    st = _start_time(pid)
    return st is None or rec.get("start") is None or st == rec.get("start")


def clear_stale_locks(workdir: str | os.PathLike = ".") -> list[str]:
    """Prune dead runs' records, remove locks nobody alive holds, register this process.
    Returns the lock files removed."""
    root = Path(workdir) / ".snakemake"
    runs = root / "doctune-runs"
    me = os.getpid()
    live = []
    if runs.is_dir():
        for f in runs.glob("*.json"):
            try:
                rec = json.loads(f.read_text())
            except (OSError, ValueError):
                rec = {}
            if rec.get("pid") == me and rec.get("host") == socket.gethostname():
                continue
            if _alive(rec):
                live.append(rec)
            else:
                f.unlink(missing_ok=True)
    removed = []
    locks = root / "locks"
    if not live and locks.is_dir():
        for f in sorted(locks.glob("*.lock")):
            f.unlink(missing_ok=True)
            removed.append(str(f))
    runs.mkdir(parents=True, exist_ok=True)
    rec = {"host": socket.gethostname(), "pid": me, "start": _start_time(me)}
    tmp = runs / f".{socket.gethostname()}-{me}.tmp"
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, runs / f"{socket.gethostname()}-{me}.json")
    return removed
