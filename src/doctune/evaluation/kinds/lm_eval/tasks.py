"""lm-eval's task index, built for the tasks a job needs only.

``lm_eval.tasks.TaskManager()`` parses the YAML of every task lm-eval ships (14,683 in 0.4.13):
about 10 s on an idle core and minutes on a busy machine, paid again by every job, even for one
local task that needs none of them. ``task_manager(tasks)`` finds the folders holding the named
tasks' YAML files by a text search (file names first, then every file) and indexes just those;
local task configs (dicts) need no index at all. A name it cannot place (a group, a tag, a task
defined in an unusual way) falls back to the full index, so the result is never less than lm-eval
itself would find."""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)


def _tasks_root() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).resolve().parent


def _defines(path: Path, name: str) -> bool:
    pat = re.compile(rf"^task:\s*['\"]?{re.escape(name)}['\"]?\s*(#.*)?$", re.M)
    try:
        return bool(pat.search(path.read_text(encoding="utf-8", errors="ignore")))
    except OSError:
        return False


def task_folders(names: Iterable[str], root: Path | None = None) -> dict[str, Path]:
    """name -> folder of the YAML file that defines `task: name` (names not found are absent)."""
    root = root or _tasks_root()
    want = set(names)
    found: dict[str, Path] = {}
    yamls: list[Path] | None = None
    # 1. files named after the task (hellaswag/hellaswag.yaml): a cheap directory walk
    for name in sorted(want):
        for p in root.rglob(f"*{name}*.yaml"):
            if _defines(p, name):
                found[name] = p.parent
                break
    # 2. the rest: read every YAML once
    rest = want - set(found)
    if rest:
        yamls = [Path(dp) / f for dp, _, fs in os.walk(root) for f in fs if f.endswith((".yaml", ".yml"))]
        for p in yamls:
            for name in list(rest):
                if _defines(p, name):
                    found[name] = p.parent
                    rest.discard(name)
            if not rest:
                break
    return found


def task_manager(tasks: Iterable[Any]):
    """A ``TaskManager`` that knows the given tasks (names or config dicts) and, where possible,
    nothing else."""
    from lm_eval.tasks import TaskManager

    names = [t for t in tasks if isinstance(t, str)]
    t0 = time.time()
    if not names:
        log.info("lm-eval: local task configs only, no task index needed")
        return TaskManager(include_defaults=False)
    folders = task_folders(names)
    if set(folders) == set(names):
        tm = TaskManager(include_path=sorted({str(f) for f in folders.values()}), include_defaults=False)
        if all(n in tm.all_tasks for n in names):
            log.info("lm-eval: indexed the folders of %s only (%.1f s)", ", ".join(names), time.time() - t0)
            return tm
    missing = sorted(set(names) - set(folders))
    log.info("lm-eval: building the index of every task (%s not found by name; this takes a while)",
             ", ".join(missing) or "a group or tag")
    tm = TaskManager()
    log.info("lm-eval: task index built (%.1f s)", time.time() - t0)
    return tm
