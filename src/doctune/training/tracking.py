"""Optional experiment tracking (config key `tracking:`): training curves and sweep metrics in wandb
or trackio, offline by default, off unless `tracking.backend` is set.

Contract:
- `open_tracker(tracking_cfg, name=, group=, config=)` returns a Tracker with `log(metrics, step)`,
  `summary(metrics)` and `finish()`. With no config or `backend: null` it is a no-op tracker.
  project = `tracking.project` (default: the group, i.e. the run_name), group = the run_name,
  run name = the model/arm name, config = the arm's settings less every key named like a secret
  (a word key/token/secret/password/credential: api_key, hf_token; not max_tokens), and with any
  string holding such an environment variable's value redacted. Nothing of the environment is
  passed on; wandb runs with console capture, git and code saving off.
- Offline unless `tracking.mode: online`: wandb runs with mode="offline" (files under
  DIR/wandb/, `wandb sync` uploads them later); trackio writes its local database (TRACKIO_DIR =
  `tracking.dir`) and ignores TRACKIO_SPACE_ID / TRACKIO_SERVER_URL. A relative dir is relative
  to the job's working folder (runs/RUN_NAME/ under Snakemake).
- A missing package is a TrackingError (a configuration error naming `tracking.backend` and the
  pip line): the user asked for tracking. Any other tracker failure (at init, log, finish) is a
  warning and the tracker becomes a no-op: tracking never loses a training run.
- Defaults come from config/schema.yaml (`tracking`), via schema_defaults.
- `log_sweep_metrics(tracking_cfg, project_default=, group=, rows=)`: one run per sweep point
  (rows of model, benchmark, metric, value[, sweep, key, x, train_tokens]), metrics logged as
  `{benchmark}/{metric}` at step 0, x and train_tokens as summary values; config = model, sweep,
  vary (the row's `key`) and x.
"""
from __future__ import annotations

import importlib
import logging
import numbers
import os
import re
import sys
from pathlib import Path
from typing import Any

from ..workflow.config import ConfigError

log = logging.getLogger(__name__)

PIP = {"wandb": "pip install -r requirements-tracking.txt   (or: pip install wandb)",
       "trackio": "pip install -r requirements-tracking.txt   (or: pip install trackio)"}
MODES = ("offline", "online")
# words that make a config key secret ("max_tokens" is a count: only the singular "token" is)
SECRET_WORDS = {"key", "apikey", "token", "secret", "secrets", "password", "passwd", "credential", "credentials"}
REDACTED = "<redacted>"


class TrackingError(ConfigError):
    """Tracking was asked for but cannot work (its package is not installed, a bad setting)."""

    user_error = True   # doctune.workflow.pipeline.run prints one line, no traceback


# ------------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------------

def tracking_defaults() -> dict:
    """The schema's defaults of `tracking` ({} while config/schema.yaml has no such block)."""
    from ..workflow.config import schema_defaults

    try:
        return schema_defaults("properties", "tracking")
    except KeyError:
        return {}


def resolve_tracking(tracking_cfg: dict | None) -> dict | None:
    """The tracking settings with the schema's defaults, or None when tracking is off."""
    if not tracking_cfg or not tracking_cfg.get("backend"):
        return None
    defaults = tracking_defaults()   # every key of the schema's block has a default
    unknown = sorted(set(tracking_cfg) - set(defaults)) if defaults else []
    if unknown:
        raise TrackingError(f"config key 'tracking.{unknown[0]}': unknown key (known: {', '.join(defaults)})")
    cfg = {**defaults, **tracking_cfg}
    if cfg["backend"] not in PIP:
        raise TrackingError(f"config key 'tracking.backend': {cfg['backend']!r} is not one of null, "
                            f"{', '.join(PIP)}")
    mode = cfg.get("mode") or "offline"
    if mode not in MODES:
        raise TrackingError(f"config key 'tracking.mode': {mode!r} is not one of {', '.join(MODES)}")
    cfg["mode"] = mode
    return cfg


def _default_run_name() -> str:
    from ..workflow.config import schema_defaults

    return schema_defaults()["run_name"]


def import_backend(backend: str):
    """The backend's package; TrackingError naming the config key and the pip line when absent."""
    try:
        return importlib.import_module(backend)
    except ImportError as exc:
        raise TrackingError(f"config key 'tracking.backend' is {backend!r} but the {backend} package cannot be "
                            f"imported ({exc}); install it: {PIP[backend]}, or set tracking.backend: null") from None


def _secret_name(key: Any) -> bool:
    k = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(key)).lower()
    words = set(re.split(r"[^a-z0-9]+", k))
    return bool(words & SECRET_WORDS) or any(w in k.replace("_", "") for w in ("apikey", "secret", "password"))


def _secret_env_values() -> list[str]:
    return [v for k, v in os.environ.items() if _secret_name(k) and len(v) >= 6]


def strip_secrets(obj: Any, _values: list[str] | None = None) -> Any:
    """A copy of obj without the keys whose name has a word key, token, secret, password or
    credential (api_key, apiKey, hf_token, client_secret; not max_tokens, a count), and with every
    string holding the value of an environment variable so named replaced by "<redacted>"."""
    values = _secret_env_values() if _values is None else _values
    if isinstance(obj, dict):
        return {k: strip_secrets(v, values) for k, v in obj.items() if not _secret_name(k)}
    if isinstance(obj, (list, tuple)):
        return [strip_secrets(v, values) for v in obj]
    if isinstance(obj, str):
        return REDACTED if any(v in obj for v in values) else obj
    return obj if isinstance(obj, (int, float, bool)) or obj is None else str(obj)


# ------------------------------------------------------------------------------------------------
# trackers
# ------------------------------------------------------------------------------------------------

def _plain_number(v):
    """numpy and other number types (a TSV read with pandas) as int or float."""
    return v if isinstance(v, bool) else int(v) if isinstance(v, numbers.Integral) else float(v)


class Tracker:
    """No-op tracker (tracking off, not the main process, or after a tracker failure)."""

    enabled = False

    def log(self, metrics: dict, step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class _Safe(Tracker):
    """A backend run whose failures become one warning, after which it is a no-op."""

    enabled = True

    def __init__(self, run, backend: str, name: str):
        self._run, self._backend, self._name, self._last_step = run, backend, name, None

    def _call(self, what: str, fn, *args) -> None:
        if self._run is None:
            return
        try:
            fn(*args)
        except Exception as exc:   # noqa: BLE001 - tracking must never stop training
            log.warning("tracking (%s, %s): %s failed (%s: %s); tracking is off for the rest of this run",
                        self._backend, self._name, what, type(exc).__name__, exc)
            self._run = None

    def log(self, metrics: dict, step: int | None = None) -> None:
        metrics = {k: _plain_number(v) for k, v in metrics.items()
                   if isinstance(v, numbers.Real) and not isinstance(v, bool)}
        if metrics:
            self._last_step = step if step is not None else self._last_step
            self._call("log", self._log, metrics, step)

    def summary(self, metrics: dict) -> None:
        metrics = {k: _plain_number(v) if isinstance(v, numbers.Real) else strip_secrets(v)
                   for k, v in metrics.items() if isinstance(v, (numbers.Real, str))}
        if metrics:
            self._call("summary", self._summary, metrics)

    def finish(self, exit_code: int = 0) -> None:
        self._call("finish", self._finish, exit_code)
        self._run = None


class _Wandb(_Safe):
    def _log(self, metrics, step):
        self._run.log(metrics, step=step)

    def _summary(self, metrics):
        self._run.summary.update(metrics)

    def _finish(self, exit_code):
        self._run.finish(exit_code=exit_code)


class _Trackio(_Safe):
    def _log(self, metrics, step):
        self._run.log(metrics, step=step)

    def _summary(self, metrics):   # trackio has no run summary: the values at the last logged step
        self._run.log({f"summary/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                      step=self._last_step)

    def _finish(self, exit_code):
        self._run.finish()


def _open_wandb(mod, cfg: dict, project: str, name: str, group: str, config: dict):
    kw = {}
    if cfg.get("dir"):
        Path(cfg["dir"]).mkdir(parents=True, exist_ok=True)
        kw["dir"] = str(cfg["dir"])
    if not logging.getLogger("wandb").level:   # its INFO lines would fill the rule's log
        logging.getLogger("wandb").setLevel(logging.WARNING)
    settings = mod.Settings(console="off", disable_git=True, save_code=False, silent=True)
    run = mod.init(project=project, group=group, name=name, config=config, mode=cfg["mode"],
                   reinit="create_new", settings=settings, **kw)
    where = Path(run.dir).parent
    log.info("tracking: wandb %s run %s/%s in %s%s", cfg["mode"], project, name, where,
             " (upload it with: wandb sync %s)" % where if cfg["mode"] == "offline" else "")
    return _Wandb(run, "wandb", name)


TRACKIO_REMOTE_ENV = ("TRACKIO_SPACE_ID", "TRACKIO_SERVER_URL", "TRACKIO_DATASET_ID", "TRACKIO_BUCKET_ID")


def _trackio_dir(path: str) -> None:
    """trackio reads TRACKIO_DIR once, when imported: set it (for its later imports in this
    process) and its module-level copies in the trackio modules already imported."""
    p = Path(path).resolve()
    p.mkdir(parents=True, exist_ok=True)
    os.environ["TRACKIO_DIR"] = str(p)
    for mname, m in list(sys.modules.items()):
        if (mname == "trackio" or mname.startswith("trackio.")) and m is not None:
            for attr, val in (("TRACKIO_DIR", p), ("MEDIA_DIR", p / "media"), ("ARTIFACTS_DIR", p / "artifacts")):
                if isinstance(getattr(m, attr, None), Path):
                    setattr(m, attr, val)


def _open_trackio(mod, cfg: dict, project: str, name: str, group: str, config: dict):
    if cfg.get("dir"):
        _trackio_dir(cfg["dir"])
    hidden = {}
    if cfg["mode"] == "offline":   # local database only, whatever the environment says
        hidden = {k: os.environ.pop(k) for k in TRACKIO_REMOTE_ENV if k in os.environ}
        if hidden:
            log.warning("tracking.mode is offline: ignoring %s", ", ".join(hidden))
    try:
        run = mod.init(project=project, name=name, group=group, config=config, embed=False,
                       auto_log_cpu=False, auto_log_gpu=False)
    finally:
        os.environ.update(hidden)
    log.info("tracking: trackio run %s/%s (browse: trackio show --project %s)", project, name, project)
    return _Trackio(run, "trackio", name)


OPENERS = {"wandb": _open_wandb, "trackio": _open_trackio}


def open_tracker(tracking_cfg: dict | None, *, name: str, group: str | None, config: dict) -> Tracker:
    """A tracker for one run (see the module docstring); a no-op one when tracking is off.
    group None (train() called outside the workflow): no group, project = tracking.project or
    the schema's default run_name."""
    cfg = resolve_tracking(tracking_cfg)
    if cfg is None:
        return Tracker()
    backend = cfg["backend"]
    mod = import_backend(backend)
    project = cfg.get("project") or group or _default_run_name()
    try:
        return OPENERS[backend](mod, cfg, project, name, group, strip_secrets(config))
    except Exception as exc:   # noqa: BLE001 - tracking must never stop training
        log.warning("tracking (%s, %s): could not start a run (%s: %s); going on without tracking",
                    backend, name, type(exc).__name__, exc)
        return Tracker()


def log_sweep_metrics(tracking_cfg: dict | None, *, project_default: str, group: str, rows: list[dict]) -> int:
    """One tracker run per sweep point (rows grouped by `model`, e.g. `doc~n_docs=2`): its
    metrics as `{benchmark}/{metric}`, its x value and train_tokens as summary values, its sweep,
    x and swept key (as "vary") in the run's config. Returns the number of runs (0: tracking off)."""
    if resolve_tracking(tracking_cfg) is None:
        return 0
    cfg = {**tracking_cfg, "project": tracking_cfg.get("project") or project_default}
    points: dict[str, list[dict]] = {}
    for r in rows:
        points.setdefault(str(r["model"]), []).append(r)
    for model, prow in points.items():
        first = prow[0]
        # the swept key goes in as "vary" (the sweeps' own word): a config key named "key" is dropped as a secret
        config = {c: first[k] for c, k in (("model", "model"), ("sweep", "sweep"), ("vary", "key"), ("x", "x"))
                  if first.get(k) is not None}
        tracker = open_tracker(cfg, name=model, group=group, config=config)
        metrics = {f"{r['benchmark']}/{r['metric']}": r["value"] for r in prow if r.get("value") is not None}
        tracker.log(metrics, step=0)
        summary = {k: next((r[k] for r in prow if r.get(k) is not None), None) for k in ("x", "train_tokens")}
        tracker.summary({**metrics, **summary})
        tracker.finish()
    return len(points)
