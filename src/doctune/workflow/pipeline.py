"""Glue shared by the thin scripts in scripts/: logging to the rule's log file, provenance
sidecars for every output, model fingerprints for caches, and multi-GPU relaunch of training."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..io import atomic_write_text, read_json, stable_hash

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_threads(n: Any, environ: dict | None = None) -> int | None:
    """Make the job use as many CPU threads as its rule declares (Snakemake ``threads:``): set the
    OpenMP/MKL/OpenBLAS variables (read when torch starts) and torch's own count when torch is
    already imported. Without it every job takes all cores, and jobs that Snakemake runs side by
    side oversubscribe them. Returns the count set, or None when ``n`` is not a positive integer."""
    try:
        n = int(n)
    except (TypeError, ValueError):
        return None
    if n < 1:
        return None
    env = os.environ if environ is None else environ
    for var in THREAD_ENV:
        env[var] = str(n)
    if environ is None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    return n


def setup_logging(log_path: str | None) -> logging.Logger:
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for h in list(root.handlers):
        root.removeHandler(h)
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root.addHandler(err)
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(log_path, mode="a", encoding="utf-8")
        fh.setFormatter(fmt)
        root.addHandler(fh)
    logging.captureWarnings(True)
    return logging.getLogger("doctune")


def _plain(obj: Any) -> Any:
    """Snakemake params/namedlists -> plain JSON-able values."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def params_dict(sm) -> dict:
    """The rule's params (the config slice it depends on) as a plain dict."""
    return {k: _plain(v) for k, v in sm.params.items()}


# Rules that make one thing from one data set (a model's completions or scores on one benchmark,
# a post-training sample, a post-trained model): when their data is unavailable, or an input is
# already a missing-data marker, their outputs become markers. The metrics rule reads markers
# itself and reports the benchmark missing; rules that combine many benchmarks (summary,
# comparisons, plots, rating sample) skip what is missing and never become markers themselves.
PROPAGATE_MISSING = {"completions", "judge", "judge_gate", "score_logprob", "lm_eval", "posttrain_data", "replay_data",
                     "post_train", "alias_arm", "train_arm"}


def _package_dir(name: str) -> str | None:
    import importlib.util

    spec = importlib.util.find_spec(name)
    locs = list(spec.submodule_search_locations or []) if spec else []
    return str(Path(locs[0]).resolve()) if locs else None


def data_unavailable(exc: BaseException) -> bool:
    """Whether an exception means that a data set cannot be had right now: a DataUnavailable (the
    loaders raise it when the hub says so), or an error raised inside the `datasets` library that
    `hub.hub_problem` classifies as offline and not cached, gated or unreachable. Anything
    else - a wrong split or config name, a bad column, a local file that is not there, a dataset
    the hub does not have, a bug - is a failure."""
    import traceback

    from ..io import DataUnavailable
    from .hub import UNAVAILABLE, hub_problem

    ds_dir = None
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DataUnavailable):
            return True
        ds_dir = ds_dir or _package_dir("datasets")
        if ds_dir and any(str(Path(f.filename).resolve()).startswith(ds_dir + os.sep)
                          for f in traceback.extract_tb(e.__traceback__)):
            problem = hub_problem(e)
            return bool(problem) and problem[0] in UNAVAILABLE
        e = e.__cause__ or e.__context__
    return False


def _stopped(log: logging.Logger, where: str, exc: BaseException) -> None:
    """A user error (an exception with `user_error`, e.g. a config problem or a data set that
    cannot be read as configured): one line naming what stopped, no traceback; exit status 1."""
    log.error("rule %s stopped: %s", where, " ".join(str(exc).split()))
    raise SystemExit(1) from None


def run(sm, body: Callable[[], Any], record_result: bool = False) -> Any:
    """Run a script body with logging, timing and provenance for all of the rule's outputs
    (with `record_result`, the body's return value, a dict, goes into each record as "result":
    what the step found, e.g. the sha256 and source of an imported GGUF file).

    Missing data: when the body fails because a data set is unavailable (see `data_unavailable`),
    or an input is already a missing-data marker and the rule is in PROPAGATE_MISSING, each
    output becomes a marker with the reason and the job succeeds, so the rest of the run goes on
    and the summary reports what needed the data as missing."""
    from ..io import missing_marker, write_missing_marker

    log_path = sm.log[0] if len(sm.log) else None
    log = setup_logging(log_path)
    limit_threads(getattr(sm, "threads", None))
    rule = getattr(sm, "rule", "?")
    outputs, inputs = list(map(str, sm.output)), list(map(str, sm.input))
    log.info("rule %s: start (inputs: %s)", rule, ", ".join(inputs) or "none")
    t0 = time.time()
    upstream = [(p, r) for p in inputs if (r := missing_marker(p))]
    if upstream and rule in PROPAGATE_MISSING:
        reason = upstream[0][1]
        log.warning("rule %s: input %s is missing (%s); writing missing markers", rule, upstream[0][0], reason)
        for out in outputs:
            write_missing_marker(out, reason)
        write_provenance(outputs, inputs, params_dict(sm), rule)
        return None
    try:
        result = body()
    except Exception as exc:
        if rule not in PROPAGATE_MISSING or not data_unavailable(exc):
            if getattr(exc, "user_error", False):   # a configuration problem: one line, no traceback
                _stopped(log, rule, exc)
            log.exception("rule %s failed", rule)
            raise
        reason = f"data unavailable: {type(exc).__name__}: {exc}"[:2000]
        log.warning("rule %s: %s; writing missing markers, the run goes on", rule, reason)
        for out in outputs:
            write_missing_marker(out, reason)
        result = None
    extra = {"result": _plain(result)} if record_result and isinstance(result, dict) else None
    write_provenance(outputs, inputs, params_dict(sm), rule, extra=extra)
    log.info("rule %s: done in %.1f s", rule, time.time() - t0)
    return result


def run_each(sm, units: list[dict]) -> dict[str, Any]:
    """One job doing several independent pieces of work, e.g. one model on each of its
    benchmarks, so that the model is loaded once per job instead of once per benchmark. Each
    unit, {"name", "outputs", "inputs", "config", "body"}, is handled as `run` handles a whole
    job: its outputs become missing markers when one of its own inputs is a marker or its data
    is unavailable (the other units go on), and its outputs get provenance records naming its
    own inputs and config slice. Returns {name: body result (None for a missing unit)}."""
    from ..io import missing_marker, write_missing_marker

    log_path = sm.log[0] if len(sm.log) else None
    log = setup_logging(log_path)
    limit_threads(getattr(sm, "threads", None))
    rule = getattr(sm, "rule", "?")
    log.info("rule %s: start (%d units: %s)", rule, len(units), ", ".join(u["name"] for u in units))
    t0 = time.time()
    results: dict[str, Any] = {}
    for u in units:
        name, outputs, inputs = u["name"], list(map(str, u["outputs"])), list(map(str, u["inputs"]))
        t1 = time.time()
        upstream = [(p, r) for p in inputs if (r := missing_marker(p))]
        reason = None
        if upstream and rule in PROPAGATE_MISSING:
            reason = upstream[0][1]
            log.warning("rule %s/%s: input %s is missing (%s); writing missing markers", rule, name,
                        upstream[0][0], reason)
        else:
            log.info("rule %s/%s: start", rule, name)
            try:
                results[name] = u["body"]()
            except Exception as exc:
                if rule not in PROPAGATE_MISSING or not data_unavailable(exc):
                    if getattr(exc, "user_error", False):   # a configuration problem: one line
                        _stopped(log, f"{rule}/{name}", exc)
                    log.exception("rule %s/%s failed", rule, name)
                    raise
                reason = f"data unavailable: {type(exc).__name__}: {exc}"[:2000]
                log.warning("rule %s/%s: %s; writing missing markers, the run goes on", rule, name, reason)
        if reason is not None:
            for out in outputs:
                write_missing_marker(out, reason)
            results[name] = None
        write_provenance(outputs, inputs, _plain(u.get("config") or {}), rule)
        log.info("rule %s/%s: done in %.1f s", rule, name, time.time() - t1)
    log.info("rule %s: done in %.1f s", rule, time.time() - t0)
    return results


def write_provenance(outputs: list[str], inputs: list[str], config_slice: dict, rule: str,
                     extra: dict | None = None) -> None:
    try:
        from .provenance import write_sidecar
    except ImportError:  # pragma: no cover - provenance module missing
        logging.getLogger("doctune").warning("doctune.workflow.provenance not available: no provenance written")
        return
    for out in outputs:
        if Path(out).exists():
            write_sidecar(out, inputs, config_slice, rule, extra=extra)


# ---------------------------------------------------------------------------------------------
# Model specs and fingerprints
# ---------------------------------------------------------------------------------------------

def load_spec(path: str) -> dict:
    from ..models import model_fingerprint

    spec = read_json(path)
    spec["fingerprint"] = model_fingerprint(spec)
    return spec


# ---------------------------------------------------------------------------------------------
# Training launch
# ---------------------------------------------------------------------------------------------

# train() arguments that only report on a run (experiment tracking): never part of its run key
NOT_RUN_KEY = ("tracking", "run_group")


def prepare_train_dir(out_dir: str, run_key: dict) -> None:
    """Keep checkpoints only if they belong to the same training run (same data, config, and the
    init model's *contents*); otherwise start clean. train() checks its own fingerprint too, but
    that one names the init model by path, so a retrained arm would look unchanged to it.
    The NOT_RUN_KEY entries of run_key["kwargs"] are left out: turning tracking on keeps a run."""
    out = Path(out_dir)
    if isinstance(run_key.get("kwargs"), dict):
        run_key = {**run_key, "kwargs": {k: v for k, v in run_key["kwargs"].items() if k not in NOT_RUN_KEY}}
    key = stable_hash(run_key, 32)
    marker = out / ".run_key"
    if out.exists() and (not marker.exists() or marker.read_text().strip() != key):
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        atomic_write_text(marker, key + "\n")


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(args_file: str, processes: int, port: int | None = None,
                       entry: list[str] | None = None) -> list[str]:
    """`accelerate launch` with one process per GPU. Every launch setting is given explicitly, so a
    user's `accelerate config` file cannot change how a rule trains, and each job takes its own
    rendezvous port: two multi-GPU jobs on one node would otherwise both use 29500."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(port or _free_port()), *(entry or ["-m", "doctune.workflow.pipeline"]), "train",
            args_file]


def launch_training(kwargs: dict, gpus: int, entry: list[str] | None = None) -> None:
    """Train in this process, or under `accelerate launch` with one process per GPU.

    In the second case a stop signal to this process (SIGTERM, SIGUSR1, SIGINT) reaches the launcher
    as SIGTERM, which it passes on to every rank; this process waits, so the ranks can save their
    checkpoint before the job ends, and exits with status 143 (as a single-process run does).
    `entry` replaces `-m doctune.workflow.pipeline` as the per-rank program (tests use it)."""
    if gpus > 1 and "LOCAL_RANK" not in os.environ:
        import signal

        from ..training.loop import EXIT_PREEMPTED, STOP_SIGNALS

        log = logging.getLogger("doctune")
        args_file = Path(kwargs["out_dir"]) / ".train_args.json"
        atomic_write_text(args_file, json.dumps(kwargs))
        cmd = accelerate_command(str(args_file), gpus, entry=entry)
        log.info("launching: %s", " ".join(cmd))
        # the ranks import doctune from where this process did (a conda env need not have it installed)
        src = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])}
        proc = subprocess.Popen(cmd, env=env)
        stopped: list[int] = []

        def _forward(signum, frame):
            stopped.append(signum)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # the launcher handles SIGTERM, not SIGUSR1

        previous = {}
        for sname in (*STOP_SIGNALS, "SIGINT"):
            sig = getattr(signal, sname, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, _forward)
        try:
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if code != 0 and stopped:
            log.warning("training stopped by signal %s; the checkpoint lets a rerun resume", stopped[0])
            raise SystemExit(EXIT_PREEMPTED)
        if code != 0:
            raise RuntimeError(f"accelerate launch exited with status {code}: {' '.join(cmd)}")
        return
    from ..training import train

    train(**kwargs)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) == 2 and argv[0] == "train":
        setup_logging(None)
        from ..training import train

        train(**json.loads(Path(argv[1]).read_text()))
        return
    raise SystemExit("usage: python -m doctune.workflow.pipeline train ARGS.json")


if __name__ == "__main__":
    main()
