"""Preflight: every input a run will read, checked before the first job - in a dry run too.

The Snakefile calls `snakefile_preflight` while it is parsed (`onstart` does not run in a dry
run). It collects every problem before stopping and prints one line per problem, naming the
file and line or the config key, with a "did you mean" for names; a user error never ends in a
traceback. Checked:

* the config: schema (types, unknown keys, enums), references between sections, numbers written
  `1e-3` (read as numbers), each arm's training overrides;
* corpora: `resources/corpora/NAME.yaml` (or `corpora.NAME.definition`), its template lists
  (`resources/grid/*.txt` or the corpus's `grid`), prompt template and topic fields;
* post-training data: every record of a local source (not only the sampled ones) and that each
  of `posttrain_data.sizes` fits the file; local chat data of `sft` arms;
* benchmarks: their local question, dimension, prompt and CSV files, lm-eval task names (each
  kind's own `check`);
* models: a local `base_models.NAME.path`/`tokenizer` must exist with safetensors weights; a GGUF
  base (`base_models.NAME.gguf`) must name a file that exists (in its package) with the expected
  sha256, and the gguf reader must be installed; a hub
  id must be cached when offline (HF_HUB_OFFLINE=1), else reachable and accessible (not gated);
* hub datasets (benchmarks, post-training data): cached when offline, else reachable;
* API keys: the environment variable of every Gemini generator or judge the run uses;
* other files the config names (ratings, judge prompts, file-backend sources).

Errors vs. warnings: whatever the user can fix in their files or config is an error (a local
file that does not exist, a malformed record, a model that cannot be had). A hub *dataset* that
is unreachable, gated or not cached is a warning only: the jobs that need it report it as
missing in the summary and the rest of the run goes on.

`DOCTUNE_PREFLIGHT=warn` prints the problems without stopping (to plan the DAG of a config on a
machine that will not run it); `DOCTUNE_PREFLIGHT=off` skips the checks (the schema still holds).
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .config import (ConfigError, arm_train_cfg, config_problems, deep_merge, did_you_mean, posttrain_units,
                     train_units)
from .hub import OFFLINE, UNAVAILABLE, hub_problem, unreachable
from ..io import DataError

HubCheck = Callable[[str, str, "str | None"], "tuple[str, str]"]
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
TRUE = ("1", "true", "yes", "on")


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    config: dict | None = None
    config_ok: bool = True   # schema and references hold (the DAG can be built)

    def error(self, where: str, message: str) -> None:
        message = re.sub(r"\s*\n\s*", " ", message.strip())   # one line per problem
        line = f"{where}: {message}" if where else message
        if line not in self.errors:
            self.errors.append(line)

    def warn(self, where: str, message: str) -> None:
        message = re.sub(r"\s*\n\s*", " ", message.strip())
        line = f"{where}: {message}" if where else message
        if line not in self.warnings:
            self.warnings.append(line)

    def format(self) -> str:
        out = [f"preflight: warning: {w}" for w in self.warnings]
        if self.errors:
            out.append(f"preflight: {len(self.errors)} problem(s) found before any job ran:")
            out += [f"  {e}" for e in self.errors]
        return "\n".join(out)


def _key(k: str) -> str:
    return f"config key '{k}'"


def _msg(exc: BaseException) -> str:
    """An exception's message without its class (our errors already name file and key)."""
    return str(exc).strip() or type(exc).__name__


# ---------------------------------------------------------------------------------------------
# Hub: is a model or dataset id available?
# ---------------------------------------------------------------------------------------------

def _env_true(env: dict, *names: str) -> bool:
    return any(str(env.get(n, "")).strip().lower() in TRUE for n in names)


def _hub_cache(env: dict) -> Path:
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "hub"


def _datasets_cache(env: dict) -> Path:
    if env.get("HF_DATASETS_CACHE"):
        return Path(env["HF_DATASETS_CACHE"]).expanduser()
    home = env.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(home).expanduser() / "datasets"


def hub_cached(repo_id: str, repo_type: str, revision: str | None, env: dict | None = None) -> bool:
    """Whether the local HuggingFace caches hold the repo (at the revision, when one is pinned)."""
    env = dict(os.environ if env is None else env)
    folder = _hub_cache(env) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snaps = folder / "snapshots"
    if revision:
        ref = folder / "refs" / revision
        sha = ref.read_text().strip() if ref.is_file() else revision
        if (snaps / sha).is_dir() and any((snaps / sha).iterdir()):
            return True
    elif snaps.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in snaps.iterdir()):
        if repo_type != "model" or any((p / "config.json").exists() for p in snaps.iterdir()):
            return True
    if repo_type == "dataset":  # datasets' own cache of prepared data
        d = _datasets_cache(env) / repo_id.replace("/", "___")
        return d.is_dir() and any(d.iterdir())
    return False


def hub_status(repo_id: str, repo_type: str, revision: str | None, env: dict | None = None,
               timeout: float = 10.0) -> tuple[str, str]:
    """("ok" | "cached" | "offline" | "not_found" | "gated" | "unreachable", detail).

    Offline (HF_HUB_OFFLINE=1, or HF_DATASETS_OFFLINE=1 for datasets): only the cache is
    consulted. Online: the hub is asked for the repo (and revision) and whether this user may
    download it."""
    env = dict(os.environ if env is None else env)
    offline = _env_true(env, "HF_HUB_OFFLINE") or (repo_type == "dataset" and _env_true(env, "HF_DATASETS_OFFLINE"))
    if offline:
        if hub_cached(repo_id, repo_type, revision, env):
            return "cached", "in the local cache"
        return "offline", OFFLINE
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RevisionNotFoundError
    except ImportError as exc:  # pragma: no cover - a pinned dependency
        return "unreachable", f"huggingface_hub is not installed ({exc})"
    api = HfApi()
    try:
        info = api.dataset_info if repo_type == "dataset" else api.model_info
        info(repo_id, revision=revision, timeout=timeout)
        api.auth_check(repo_id, repo_type=repo_type)
    except Exception as exc:  # noqa: BLE001 - the hub's answers and network errors of every kind
        status, detail = hub_problem(exc, env) or ("unreachable", unreachable(exc))
        if status == "not_found" and isinstance(exc, RevisionNotFoundError):
            detail = f"the hub has no revision {revision!r} of it"
        if status not in ("gated", "not_found") and hub_cached(repo_id, repo_type, revision, env):
            return "cached", f"hub unreachable ({type(exc).__name__}) but in the local cache"
        return status, detail
    return "ok", "on the hub"


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------

class _Ctx:
    def __init__(self, cfg: dict, report: Report, root: Path, env: dict, hub: HubCheck):
        self.cfg, self.report, self.root, self.env, self.hub = cfg, report, root, env, hub

    def path(self, p: str) -> Path:
        q = Path(p).expanduser()
        return q if q.is_absolute() else self.root / q


def _check_training(ctx: _Ctx) -> None:
    from ..training.config import resolve_train_cfg

    from .sweeps import sweep_arms

    cfg = ctx.cfg
    seen: set[str] = set(sweep_arms(cfg))   # a sweep's points: checked with their values when expanded
    for unit in train_units(cfg):
        arm = unit.partition("@")[0]
        if arm in seen or cfg["arms"][arm].get("init_from"):
            continue
        seen.add(arm)
        try:
            resolve_train_cfg(arm_train_cfg(cfg, unit))
        except ConfigError as exc:
            where = f"arms.{arm}.training" if cfg["arms"][arm].get("training") else "training"
            ctx.report.error(_key(where), _msg(exc))
    over = (cfg.get("posttrain") or {}).get("training")
    if posttrain_units(cfg) and over:
        base = {k: v for k, v in cfg["training"].items() if k != "resources"}
        try:
            resolve_train_cfg(deep_merge(base, over))
        except ConfigError as exc:
            ctx.report.error(_key("posttrain.training"), _msg(exc))


def _check_corpora(ctx: _Ctx) -> None:
    from ..documents.corpus import (CorpusError, GRID_DIMS, apply_run_settings, load_corpus_def, load_grid,
                                   load_template, prompt_file, render_prompt)

    cfg = ctx.cfg
    rdir = ctx.path(cfg.get("resources_dir") or "resources")
    if not rdir.is_dir():
        ctx.report.error(_key("resources_dir"), f"folder {rdir} does not exist")
        return
    used = list(cfg.get("corpora") or {})
    inst = (cfg.get("instruct_data") or {}).get("corpus")
    for name in used + ([inst] if inst and inst not in used else []):
        ccfg = (cfg.get("corpora") or {}).get(name) or {}
        definition = ccfg.get("definition")
        try:
            cdef_path = ctx.path(definition) if definition else rdir / "corpora" / f"{name}.yaml"
            if not cdef_path.is_file():
                known = [p.stem for p in (rdir / "corpora").glob("*.yaml")]
                where = f"corpora.{name}.definition" if definition else f"corpora.{name}"
                ctx.report.error(_key(where), f"corpus definition {cdef_path} does not exist"
                                 f"{did_you_mean(name, known) if not definition else ''}"
                                 f" (known corpora in {rdir / 'corpora'}: {sorted(known)})")
                continue
            cdef = apply_run_settings(load_corpus_def(rdir, name, cdef_path), ccfg)
            pf = prompt_file(rdir, cdef)
            if pf is not None and not pf.is_file():
                key = f"corpora.{name}.prompt_template" if ccfg.get("prompt_template") else f"corpora.{name}"
                ctx.report.error(_key(key), f"document prompt template {pf} does not exist (from {cdef.get('_source')})")
                continue
            grid = load_grid(rdir, cdef)
            tpl = load_template(rdir, cdef)
            render_prompt(tpl, cdef, {f: grid[d][0] for d, f in
                                      zip(GRID_DIMS, ("institution", "domain", "doc_type", "reasoning"))})
        except (CorpusError, DataError, OSError) as exc:
            ctx.report.error("", _msg(exc))


def _records_problem(records: list, fmt: str, label: str, report: Report) -> int:
    """Check every post-training record; returns how many are good (all, or fewer on errors)."""
    from ..data.posttrain import to_messages

    bad = 0
    for i, rec in enumerate(records):
        where = f"{label}: record {i}" + (f" (line {rec['_line']})" if isinstance(rec, dict) and "_line" in rec else "")
        try:
            to_messages({k: v for k, v in rec.items() if k != "_line"} if isinstance(rec, dict) else rec, fmt, where)
        except DataError as exc:
            bad += 1
            if bad <= 5:
                report.error("", _msg(exc))
    if bad > 5:
        report.error("", f"{label}: {bad - 5} more bad record(s) not listed")
    return len(records) - bad


def _check_posttrain(ctx: _Ctx) -> None:
    from ..io import iter_jsonl, read_json

    cfg = ctx.cfg
    if not posttrain_units(cfg):
        return
    pdata = cfg.get("posttrain_data") or {}
    src = pdata.get("source") or {}
    fmt = src.get("format") or "alpaca"
    sizes = list(pdata.get("sizes") or [])
    if src.get("path"):
        path = ctx.path(src["path"])
        if not path.is_file():
            ctx.report.error(_key("posttrain_data.source.path"), f"{src['path']} does not exist")
            return
        try:
            if path.suffix == ".jsonl":
                lines = path.read_text(encoding="utf-8").splitlines()
                numbers = [i for i, ln in enumerate(lines, start=1) if ln.strip()]
                records: list = [dict(r, _line=numbers[j]) for j, r in enumerate(iter_jsonl(path))]
            else:
                obj = read_json(path)
                if isinstance(obj, dict) and isinstance(obj.get("data"), list):
                    obj = obj["data"]
                if not isinstance(obj, list):
                    ctx.report.error("", f"{path}: expected a JSON list of records (posttrain_data.source.path)")
                    return
                records = obj
        except DataError as exc:
            ctx.report.error("", _msg(exc))
            return
        _records_problem(records, fmt, str(src["path"]), ctx.report)
        for i, n in enumerate(sizes):
            if n > len(records):
                ctx.report.error(_key(f"posttrain_data.sizes[{i}]"),
                                 f"{n} samples asked for, but {src['path']} holds only {len(records)} records")
    elif src.get("dataset"):
        _check_hub_dataset(ctx, src, "posttrain_data.source.dataset",
                           "the post-trained models ({arm}.postN) will be reported missing")


def _check_hub_dataset(ctx: _Ctx, src: dict, key: str, consequence: str) -> None:
    status, detail = ctx.hub(src["dataset"], "dataset", src.get("revision"))
    if status in ("ok", "cached"):
        return
    where = _key(key)
    if status in UNAVAILABLE:
        ctx.report.warn(where, f"dataset {src['dataset']!r} is not available ({detail}); {consequence}")
    else:
        ctx.report.error(where, f"dataset {src['dataset']!r}: {detail}")


def _check_arm_data(ctx: _Ctx) -> None:
    from ..training.data import read_chats

    for name, a in (ctx.cfg.get("arms") or {}).items():
        data = a.get("data")
        if a.get("method") != "sft" or a.get("init_from") or data in (None, "instruct"):
            continue
        p = ctx.path(data)
        if not p.is_file():
            ctx.report.error(_key(f"arms.{name}.data"), f"{data} does not exist (give 'instruct' or a chat JSONL file)")
            continue
        try:
            read_chats([str(p)])
        except DataError as exc:
            ctx.report.error("", _msg(exc))


def _local_or_hub(ctx: _Ctx, path: str) -> str:
    """'local' (exists), 'missing' (looks like a path but is not there) or 'hub' (a repo id)."""
    if ctx.path(path).exists():
        return "local"
    if path.startswith(("/", "./", "../", "~", ".")) or "\\" in path or path.count("/") > 1:
        return "missing"
    first = path.split("/")[0]
    if "/" in path and ctx.path(first).is_dir():
        return "missing"
    return "hub" if REPO_ID.match(path) else "missing"


def _check_models(ctx: _Ctx) -> None:
    from .config import base_model_path

    for name, b in (ctx.cfg.get("base_models") or {}).items():
        key = f"base_models.{name}.path"
        if b.get("build_tiny") or b.get("gguf"):   # made by a rule of the workflow
            built = base_model_path(ctx.cfg, name)
            how = "build_tiny builds" if b.get("build_tiny") else "import_gguf imports"
            if b.get("path") and Path(b["path"]) != Path(built):
                ctx.report.warn(_key(key), f"{b['path']!r} is ignored: {how} the model at {built}")
            if b.get("gguf") and not b.get("build_tiny"):
                _check_gguf(ctx, name, b["gguf"])
            continue
        path = b.get("path")
        if not path:
            ctx.report.error(_key(key), "no model given (a local directory or a HuggingFace model id)")
            continue
        kind = _local_or_hub(ctx, path)
        if kind == "missing":
            ctx.report.error(_key(key), f"local model directory {path} does not exist")
        elif kind == "local":
            p = ctx.path(path)
            ggufs = sorted(p.glob("*.gguf")) if p.is_dir() else ([p] if p.suffix == ".gguf" else [])
            has_st = p.is_dir() and bool(list(p.glob("*.safetensors")))
            if ggufs and not has_st:   # a GGUF checkpoint is imported by a rule, never loaded as it is
                ctx.report.error(_key(key), f"{path} is a GGUF checkpoint, which is imported, not loaded: "
                                 f"set base_models.{name}.gguf.file: {ggufs[0]} instead of path")
            elif not p.is_dir():
                ctx.report.error(_key(key), f"{path} is a file; give the model's directory")
            elif not (p / "config.json").is_file():
                ctx.report.error(_key(key), f"{path} holds no config.json: not a transformers model directory")
            elif not has_st:
                extra = " (only PyTorch .bin weights, which are never loaded: convert them to safetensors)" \
                    if list(p.glob("*.bin")) else ""
                ctx.report.error(_key(key), f"{path} holds no safetensors weights{extra}")
        else:
            _check_hub_model(ctx, path, b.get("revision"), key)
        tok = b.get("tokenizer")
        if tok:
            tkind = _local_or_hub(ctx, tok)
            if tkind == "missing":
                ctx.report.error(_key(f"base_models.{name}.tokenizer"), f"local tokenizer directory {tok} does not exist")
            elif tkind == "hub":
                _check_hub_model(ctx, tok, b.get("revision"), f"base_models.{name}.tokenizer")


# GGUF files up to this size are hashed at parse time (about a second per GiB); larger ones are
# checked by the import job itself, before anything is written.
GGUF_PREFLIGHT_HASH_BYTES = 4 << 30


def _check_gguf(ctx: _Ctx, name: str, spec: dict) -> None:
    """The GGUF file of a base model: found (in its package, or at its path), the gguf reader
    installed, and the expected sha256 when one is given."""
    from ..models.gguf import GGUFError, check_sha256, gguf_available, resolve_gguf

    key = f"base_models.{name}.gguf"
    spec = dict(spec)
    if spec.get("file") and not spec.get("package") and not Path(spec["file"]).is_absolute():
        spec["file"] = str(ctx.path(spec["file"]))
    try:
        path = resolve_gguf(spec, key)
        if spec.get("sha256") and path.stat().st_size <= GGUF_PREFLIGHT_HASH_BYTES:
            check_sha256(path, spec["sha256"], key)
    except GGUFError as exc:
        ctx.report.error("", _msg(exc))
        return
    except OSError as exc:
        ctx.report.error(_key(f"{key}.file"), f"cannot read {spec.get('file')}: {exc.strerror or exc}")
        return
    if not gguf_available():
        ctx.report.error(_key(key), "importing a GGUF file needs the 'gguf' package (pip install gguf==0.19.0)")


def _check_hub_model(ctx: _Ctx, repo: str, revision: str | None, key: str) -> None:
    status, detail = ctx.hub(repo, "model", revision)
    if status not in ("ok", "cached"):
        ctx.report.error(_key(key), f"model {repo!r} is not a local directory and cannot be had from the hub: {detail}")


def _used_backends(cfg: dict) -> list[tuple[str, str, dict]]:
    """(section, name, entry) of every generator and judge the run uses."""
    out = []
    gens = cfg.get("generators") or {}
    used_gens = {c.get("generator") for c in (cfg.get("corpora") or {}).values()}
    if any(a.get("method") == "sft" and a.get("data") in (None, "instruct") and not a.get("init_from")
           for a in (cfg.get("arms") or {}).values()):
        used_gens.add((cfg.get("instruct_data") or {}).get("generator"))
    out += [("generators", g, gens[g]) for g in gens if g in used_gens]
    judges = cfg.get("judges") or {}
    used_judges = {j for b in (cfg.get("benchmarks") or {}).values() for j in b.get("judges") or []}
    out += [("judges", j, judges[j]) for j in judges if j in used_judges]
    return out


def _check_api_keys(ctx: _Ctx) -> None:
    from ..llm.registry import backend_info

    for section, name, entry in _used_backends(ctx.cfg):
        if not backend_info(entry.get("backend")).api:
            continue
        var = entry.get("api_key_env")
        if not str(ctx.env.get(var, "")).strip():
            ctx.report.error(_key(f"{section}.{name}.api_key_env"),
                             f"the API key is not set: export it in the environment variable {var} "
                             "(it is never read from a file or the config)")


def _check_files(ctx: _Ctx) -> None:
    cfg = ctx.cfg
    ratings = (cfg.get("agreement") or {}).get("ratings")
    for i, r in enumerate([ratings] if isinstance(ratings, str) else list(ratings or [])):
        if not ctx.path(r).is_file():
            key = "agreement.ratings" if isinstance(ratings, str) else f"agreement.ratings[{i}]"
            ctx.report.error(_key(key), f"ratings file {r} does not exist")
    from ..llm.registry import backend_info

    for section, name, entry in _used_backends(cfg):
        if backend_info(entry.get("backend")).source:
            if entry.get("path") and not ctx.path(entry["path"]).exists():
                ctx.report.error(_key(f"{section}.{name}.path"), f"{entry['path']} does not exist")
            elif entry.get("dataset"):
                _check_hub_dataset(ctx, entry, f"{section}.{name}.dataset",
                                   "the documents cannot be read from it")
    for name, b in (cfg.get("benchmarks") or {}).items():
        jp = b.get("judge_prompt")
        if jp and not ctx.path(jp).is_file() and not (ctx.path(cfg.get("resources_dir") or "resources") / "prompts" / jp).is_file():
            ctx.report.error(_key(f"benchmarks.{name}.judge_prompt"), f"prompt file {jp} does not exist")


URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def _benchmark_local_files(b: dict) -> list[tuple[str, str]]:
    """(config key, path) of the local files a benchmark entry names (URLs are not local)."""
    out = []
    src = b.get("source") or {}
    if src.get("path") and not URL.match(src["path"]):
        out.append(("source.path", src["path"]))
    if b.get("local_file") and not URL.match(b["local_file"]):
        out.append(("local_file", b["local_file"]))
    return out


class _quiet:
    """Loaders' warnings (e.g. a dropped question) belong to the run's logs, not to preflight."""

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("doctune")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)


def _kind_check(name: str, b: dict) -> list[str]:
    """The benchmark kind's own `check(bench_cfg)` hook (config keys and local data files, no
    download; see doctune.evaluation.kinds)."""
    from ..evaluation.kinds import get_kind

    try:
        kind = get_kind(b.get("kind"))
    except ValueError as exc:
        return [_msg(exc)]
    try:
        problems = list(kind.check(b) or [])
    except (DataError, ValueError, OSError) as exc:
        problems = [_msg(exc)]
    # the hook names keys relative to the benchmark entry: make them full config keys
    prefix = f"benchmarks.{name}."
    return [re.sub(r"config key '(?!benchmarks\.)([^']*)'", lambda m: f"config key '{prefix}{m.group(1)}'", x)
            for x in problems]


def _check_benchmarks(ctx: _Ctx) -> None:
    for name, b in (ctx.cfg.get("benchmarks") or {}).items():
        missing = False
        for key, p in _benchmark_local_files(b):
            if not ctx.path(p).exists():
                ctx.report.error(_key(f"benchmarks.{name}.{key}"), f"{p} does not exist")
                missing = True
        if missing:
            continue
        from ..evaluation.kinds import get_kind

        kind = get_kind(b.get("kind"))
        for key, message in kind.preflight_warnings(b, ctx.env):
            ctx.report.warn(_key(f"benchmarks.{name}.{key}"), message)
        with _quiet():
            problems = _kind_check(name, b)
        for problem in problems:
            ctx.report.error("" if problem.startswith("config key") else f"benchmark {name!r}", problem)
        for src in kind.hub_datasets(b):
            _check_hub_dataset(ctx, src, f"benchmarks.{name}.source.dataset",
                               f"benchmark {name!r} will be reported missing for every model")


def _check_judge_validation(ctx: _Ctx) -> None:
    """Every judged benchmark's labelled answers (the judge gate): files that parse, answers that
    fit the benchmark; a judged benchmark without any is warned about (its verdicts are flagged
    unvalidated)."""
    from ..evaluation.judge_gate import fit_records, read_set, set_entries
    from ..evaluation.kinds import get_kind

    for name, b in (ctx.cfg.get("benchmarks") or {}).items():
        try:
            kind = get_kind(b.get("kind"))
        except ValueError:
            continue   # reported by the benchmark checks
        if kind.stage != "judge":
            continue
        key = _key(f"benchmarks.{name}.judge_validation")
        try:
            entries = set_entries(b)
        except DataError as exc:
            ctx.report.error(key, _msg(exc))
            continue
        if not entries:
            ctx.report.warn(key, "no labelled answers: this benchmark's verdicts will be flagged as "
                                 "coming from an unvalidated judge")
            continue
        local = (b.get("source") or {}).get("path") or (b.get("source") or {}).get("questions_file")
        for i, e in enumerate(entries):
            where = _key(f"benchmarks.{name}.judge_validation[{i}]")
            if URL.match(str(e["path"])):
                continue   # downloaded by the gate (missing offline: the benchmark is flagged unvalidated)
            if not ctx.path(e["path"]).is_file():
                ctx.report.error(where, f"{e['path']} does not exist")
                continue
            try:
                records = read_set(e)
            except (DataError, ValueError, OSError) as exc:
                ctx.report.error(where, _msg(exc))
                continue
            if not local or URL.match(str(local)):   # hub benchmarks are checked in the run
                continue
            try:
                with _quiet():
                    _, fitting, skipped = fit_records(kind, b, records)
            except (DataError, ValueError, OSError):
                continue   # the benchmark's own data is broken: its check reports that
            if not fitting:
                ctx.report.error(where, f"none of the answers in {e['path']} fits this benchmark's "
                                        f"questions (skipped: {skipped})")


CHECKS: list[Callable[[_Ctx], None]] = [
    _check_training, _check_corpora, _check_posttrain, _check_arm_data, _check_benchmarks,
    _check_judge_validation, _check_models, _check_files, _check_api_keys,
]


def preflight(config: dict, schema_path: str | Path, *, root: str | Path = ".", env: dict | None = None,
              hub: HubCheck | None = None) -> Report:
    """Check the config and every input the run will read; returns the report (errors and
    warnings, one line each) with the validated config in `report.config`."""
    env = dict(os.environ if env is None else env)
    report = Report()
    cfg, problems = config_problems(config, schema_path)
    for p in problems:
        report.error("", p)
    report.config = cfg
    report.config_ok = not problems
    if problems:  # the other checks read the config: they need it well-formed
        return report
    hub = hub or (lambda repo, typ, rev: hub_status(repo, typ, rev, env))
    ctx = _Ctx(cfg, report, Path(root), env, hub)
    for check in CHECKS:
        check(ctx)
    return report


def snakefile_preflight(config: dict, basedir: str | Path, main_process: bool = True) -> dict:
    """What the Snakefile runs at parse time: returns the validated config, or prints every
    problem (one line each) and exits with status 1. Jobs (re-parsing the Snakefile on a node)
    check nothing but the schema."""
    mode = os.environ.get("DOCTUNE_PREFLIGHT", "on").strip().lower()
    schema = Path(basedir) / "config" / "schema.yaml"
    if not main_process or mode == "off":
        cfg, problems = config_problems(config, schema)
        if problems:
            print("preflight: invalid config:\n  " + "\n  ".join(problems), file=sys.stderr)
            sys.exit(1)
        return cfg
    report = preflight(config, schema)
    text = report.format()
    if text:
        print(text, file=sys.stderr)
    if report.config_ok:
        from .sweeps import describe_sweeps

        for line in describe_sweeps(report.config):
            print(line, file=sys.stderr)
    if report.errors:
        if mode == "warn" and report.config_ok:
            print("preflight: DOCTUNE_PREFLIGHT=warn: going on despite the problems above", file=sys.stderr)
        else:
            print("preflight: fix these and run again (nothing was run)", file=sys.stderr)
            sys.exit(1)
    return report.config
