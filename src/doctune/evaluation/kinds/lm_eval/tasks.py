"""lm-eval's task index, built for the tasks a job needs only.

``lm_eval.tasks.TaskManager()`` parses the YAML of every task lm-eval ships (14,683 in 0.4.13):
about 10 s on an idle core and minutes on a busy machine, paid again by every job, even for one
local task that needs none of them. ``task_manager(tasks)`` finds the folders holding the named
tasks' YAML files by a text search (file names first, then every file) and indexes just those;
local task configs (dicts) need no index at all. A name it cannot place (a group, a tag, a task
defined in an unusual way) falls back to the full index, so the result is never less than lm-eval
itself would find.

``task_problem(name)`` says whether the installed lm-eval knows a task name (preflight and the job
ask it). Listing every name lm-eval knows means the full index (7.5 s for 14,683 names with
lm-eval 0.4.13 on an idle core), so the list is kept per lm-eval version in
``$DOCTUNE_CACHE/lm_eval/tasks-VERSION.json`` (default ``~/.cache/doctune``): built once per
machine, then read in about 20 ms. A name whose YAML file is named after it needs no list at all."""
from __future__ import annotations

import json
import logging
import os
import re
import time
from functools import lru_cache
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


def task_folders(names: Iterable[str], root: Path | None = None, file_names_only: bool = False) -> dict[str, Path]:
    """name -> folder of the YAML file that defines `task: name` (names not found are absent);
    `file_names_only`: look only in the files named after the task (cheap), not in every file."""
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
    if rest and not file_names_only:
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


class UnknownTask(ValueError):
    """A task name the installed lm-eval does not know: the user's to fix."""

    user_error = True   # doctune.workflow.pipeline.run prints one line, no traceback


def lm_eval_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("lm_eval")
    except Exception:  # noqa: BLE001 - not installed
        return None


def task_list_file(version: str) -> Path:
    from ..common import cache_dir

    return cache_dir() / "lm_eval" / f"tasks-{version}.json"


def _read_task_list(version: str) -> frozenset[str] | None:
    try:
        doc = json.loads(task_list_file(version).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("lm_eval_version") != version or not isinstance(doc.get("tasks"), list):
        return None
    return frozenset(map(str, doc["tasks"]))


@lru_cache(maxsize=None)
def _task_list(version: str, where: Path) -> frozenset[str]:
    names = _read_task_list(version)
    if names is not None:
        return names
    from lm_eval.tasks import TaskManager

    t0 = time.time()
    names = frozenset(TaskManager().all_tasks)
    log.info("lm-eval: listed its %d task, group and tag names (%.1f s; kept in %s)", len(names),
             time.time() - t0, where)
    try:
        from ....io import atomic_write_text

        where.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(where, json.dumps({"lm_eval_version": version, "tasks": sorted(names)}) + "\n")
    except OSError as exc:   # a read-only cache: listed again by the next process
        log.warning("lm-eval: cannot keep the task list in %s (%s)", where, exc)
    return names


def known_tasks() -> frozenset[str]:
    """Every task, group and tag name the installed lm-eval knows (its own tasks), from the list
    kept per lm-eval version (built on first use)."""
    version = lm_eval_version()
    if version is None:
        raise ImportError("lm-eval is not installed")
    return _task_list(version, task_list_file(version))


@lru_cache(maxsize=None)
def _named_file(name: str) -> bool:
    return bool(task_folders([name], file_names_only=True))


def task_problem(name: str) -> str | None:
    """None when the installed lm-eval knows the task `name`; else one line saying it does not, with
    a did-you-mean. Cheap: a name defined in a YAML file named after it (hellaswag/hellaswag.yaml)
    needs no list; other names are looked up in the list of every name (``known_tasks``)."""
    from ....workflow.config import did_you_mean

    version = lm_eval_version()
    if version is None:
        raise ImportError("lm-eval is not installed")
    if not task_list_file(version).is_file() and _named_file(name):
        return None
    names = known_tasks()
    if name in names:
        return None
    return f"lm-eval {version} has no task {name!r}{did_you_mean(name, names)}"
