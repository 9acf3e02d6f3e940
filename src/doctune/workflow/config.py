"""Config validation against config/schema.yaml, with defaults filled in, plus the derived views
the workflow needs (which models exist, what each arm trains on, resolved backend configs)."""
from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

#: the config schema: every key typed, described and defaulted - the only home of defaults
SCHEMA_PATH = Path(__file__).resolve().parents[3] / "config" / "schema.yaml"


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key and what was expected."""


#: libyaml's loader where PyYAML has it (ten times faster than the pure-Python one; same result)
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    return yaml.load(text, Loader=YAML_LOADER)  # noqa: S506 - a safe loader


@lru_cache(maxsize=None)
def _schema(path: str) -> dict:
    return load_yaml(Path(path).read_text(encoding="utf-8"))


def load_schema(path: str | Path | None = None) -> dict:
    """The config schema (a copy): config/schema.yaml unless another file is named, with the names
    the registries know as enums: benchmark kinds (doctune.evaluation.kinds) and backends
    (doctune.llm.registry)."""
    from ..evaluation.kinds import kind_names
    from ..llm.registry import BACKENDS

    schema = copy.deepcopy(_schema(str(path or SCHEMA_PATH)))
    defs = schema.get("$defs") or {}
    if "benchmark" in defs:
        defs["benchmark"]["properties"]["kind"]["enum"] = kind_names()
    if "backend" in defs:
        defs["backend"]["properties"]["backend"]["enum"] = sorted(BACKENDS)
    if "generation" in defs:
        defs["generation"]["properties"]["backend"]["enum"] = ["auto"] + sorted(n for n, b in BACKENDS.items()
                                                                                if b.completions)
    return schema


def benchmark_schema(kind: str, schema: dict) -> dict:
    """A benchmark entry's schema for one kind: the common keys ($defs/benchmark) and the kind's own
    (its folder's schema.yaml, with the kinds it ``extends``), no other key allowed."""
    from ..evaluation.kinds import kind_schema

    own: dict = {}
    seen: list[str] = []
    k: str | None = kind
    while k and k not in seen:        # extends: a kind built on another takes its keys
        seen.append(k)
        doc = kind_schema(k)
        own = {**(doc.get("properties") or {}), **own}
        k = doc.get("extends")
    out = copy.deepcopy(schema["$defs"]["benchmark"])
    out["properties"] = {**out["properties"], **copy.deepcopy(own)}
    out["additionalProperties"] = False
    return out


def _specialize(schema: dict, config: dict) -> dict:
    """The schema for this config: each benchmark entry of a known kind gets its kind's schema."""
    from ..evaluation.kinds import kind_names

    names = set(kind_names())
    bench = schema["properties"].get("benchmarks")
    entries = config.get("benchmarks") if isinstance(config, dict) else None
    if bench is None or not isinstance(entries, dict):
        return schema
    props = bench.setdefault("properties", {})
    for name, entry in entries.items():
        if isinstance(entry, dict) and entry.get("kind") in names:
            props[name] = benchmark_schema(entry["kind"], schema)
    return schema


def schema_defaults(*where: str, schema_path: str | Path | None = None) -> dict:
    """The defaults of one object of the schema, e.g. ``schema_defaults("properties", "training")``
    or ``schema_defaults("$defs", "generation")``: what a config that leaves it empty gets. Code
    reads its defaults from here, so they have one home."""
    root = _schema(str(schema_path or SCHEMA_PATH))
    node: Any = root
    for key in where:
        node = node[key]
    return _fill_defaults(copy.deepcopy(node), {}, root)


def _key_path(path: Iterable[Any]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "<top level>"


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if not ref:
        return schema
    if not ref.startswith("#/"):
        raise ConfigError(f"schema: only local $ref is supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part]
    merged = {k: v for k, v in schema.items() if k != "$ref"}
    return {**node, **merged}


def _fill_defaults(schema: dict, instance: Any, root: dict | None = None) -> Any:
    """Recursively insert schema defaults for missing object properties (and into
    additionalProperties / array items that are objects)."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    types = schema.get("type")
    if isinstance(instance, dict) and (types == "object" or isinstance(types, list) and "object" in types):
        # x-defaults: a referencing schema's own defaults for keys of the schema it refers to
        # (judges are backends whose temperature defaults to 0)
        for key, val in (schema.get("x-defaults") or {}).items():
            instance.setdefault(key, copy.deepcopy(val))
        props = schema.get("properties", {})
        for key, sub in props.items():
            rsub = _resolve(sub, root)
            if key not in instance and "default" in sub:
                instance[key] = copy.deepcopy(sub["default"])
            elif key not in instance and "default" in rsub:
                instance[key] = copy.deepcopy(rsub["default"])
            if key in instance:
                instance[key] = _fill_defaults(rsub, instance[key], root)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for key in list(instance):
                if key not in props:
                    instance[key] = _fill_defaults(addl, instance[key], root)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [_fill_defaults(schema["items"], x, root) for x in instance]
    for comb in ("anyOf", "oneOf"):
        # fill defaults from the object branch when the value is an object
        for sub in schema.get(comb, []):
            if isinstance(sub, dict) and sub.get("type") == "object" and isinstance(instance, dict):
                instance = _fill_defaults(sub, instance, root)
    return instance


def did_you_mean(name: Any, choices: Iterable[Any], cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the closest of the choices (the same name in other case first),
    or '' when none is close. The project's one did-you-mean."""
    import difflib

    if not isinstance(name, str):
        return ""
    names = [str(c) for c in choices if c is not None]
    by_lower = {c.lower(): c for c in names}
    if name.lower() in by_lower and by_lower[name.lower()] != name:
        return f" (did you mean {by_lower[name.lower()]!r}?)"
    hit = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=cutoff)
    return f" (did you mean {by_lower[hit[0]]!r}?)" if hit else ""


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def as_number(value: Any, integer: bool = False) -> Any:
    """A number written as YAML 1.1 reads it as a string ('1e-3', '5e3') -> float (or int when
    `integer` and the value is whole); anything else is returned unchanged."""
    if not isinstance(value, str) or not _NUMBER.match(value.strip()):
        return value
    x = float(value)
    if integer:
        return int(x) if x.is_integer() else value
    return x


def _types(schema: dict) -> set:
    t = schema.get("type")
    return set(t) if isinstance(t, list) else ({t} if t else set())


def coerce_numbers(schema: dict, instance: Any, root: dict | None = None) -> Any:
    """Turn strings like '1e-3' into numbers wherever the schema expects a number (and only
    there): PyYAML follows YAML 1.1, which reads 1e-3 (no dot) as a string."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if isinstance(instance, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for key in list(instance):
            sub = props.get(key, addl if isinstance(addl, dict) else None)
            if isinstance(sub, dict):
                instance[key] = coerce_numbers(sub, instance[key], root)
        return instance
    if isinstance(instance, list):
        items = schema.get("items")
        return [coerce_numbers(items, x, root) for x in instance] if isinstance(items, dict) else instance
    types = _types(schema)
    if isinstance(instance, str) and "string" not in types:
        if "number" in types:
            return as_number(instance)
        if "integer" in types:
            return as_number(instance, integer=True)
    return instance


# Config blocks the schema types only as "object" (overrides of another section's keys): numbers
# in them are coerced with that section's schema.
OVERRIDE_SCHEMAS = {("arms", "*", "training"): "training", ("posttrain", "training"): "training",
                    ("benchmarks", "*", "generation"): "generation"}


def _coerce_overrides(schema: dict, cfg: dict) -> None:
    for path, target in OVERRIDE_SCHEMAS.items():
        sub = schema["properties"]["training"] if target == "training" else schema["$defs"]["generation"]
        nodes = [cfg]
        for part in path[:-1]:
            nodes = [x for n in nodes if isinstance(n, dict)
                     for x in (n.values() if part == "*" else [n.get(part)]) if isinstance(x, dict)]
        for n in nodes:
            if isinstance(n.get(path[-1]), dict):
                n[path[-1]] = coerce_numbers(sub, n[path[-1]], schema)


def _describe(err) -> str:
    key = _key_path(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        props = err.schema.get("properties", {})
        extra = sorted(set(err.instance) - set(props))
        allowed = ", ".join(sorted(props)) or "(none)"
        hints = "".join(did_you_mean(x, props) for x in extra)
        return f"config key '{key}': unknown key(s) {', '.join(map(repr, extra))}{hints}; allowed: {allowed}"
    if v == "type":
        return f"config key '{key}': expected {err.validator_value}, got {type(err.instance).__name__} {err.instance!r}"
    if v == "enum":
        return (f"config key '{key}': {err.instance!r} is not one of {err.validator_value}"
                f"{did_you_mean(err.instance, err.validator_value)}")
    if v == "required":
        return f"config key '{key}': {err.message}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "minLength", "pattern"):
        return f"config key '{key}': {err.message}"
    return f"config key '{key}': {err.message}"


def config_problems(config: dict, schema_path: str | Path | None = None) -> tuple[dict, list[str]]:
    """(the config with defaults filled in and numbers coerced, every problem found): schema
    errors, then (when the schema holds) the cross-key references."""
    import jsonschema

    schema = _specialize(load_schema(schema_path), config)
    cfg = coerce_numbers(schema, copy.deepcopy(dict(config)))
    _coerce_overrides(schema, cfg)
    cfg = _fill_defaults(schema, cfg)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(list(e.absolute_path)), list(map(str, e.absolute_path))))
    if errors:
        return cfg, [_describe(e) for e in errors]
    from .sweeps import expand_sweeps

    cfg, problems = expand_sweeps(cfg, schema)
    if problems:
        return cfg, problems
    return canonical_order(cfg), reference_problems(cfg)


def validate_config(config: dict, schema_path: str | Path | None = None) -> dict:
    """Validate (and fill defaults into) a config dict. Raises ConfigError naming the key."""
    cfg, problems = config_problems(config, schema_path)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    return cfg


RUNS_DIR = "runs"


def run_dir(cfg: dict) -> str:
    """The folder a run writes into (relative to where Snakemake starts): runs/RUN_NAME.

    The Snakefile makes it Snakemake's working directory, so every rule path (results/...,
    .snakemake/ with its locks and metadata) lives inside it and runs with different names sit
    side by side, and can even run at once."""
    return f"{RUNS_DIR}/{cfg['run_name']}"


LAUNCH_DIR_ENV = "DOCTUNE_LAUNCH_DIR"


def launch_dir(cwd: str | Path, is_main_process: bool, environ: dict) -> Path:
    """The folder Snakemake was started from: config paths are relative to it, runs/RUN_NAME is
    under it.

    The main process is started there. A job Snakemake starts as a separate process (a SLURM job,
    a cluster or group job) re-parses the Snakefile from the run folder the main process moved
    into; it takes the launch folder the main process left in the environment (sbatch passes the
    environment on), or, without it, the folder above runs/RUN_NAME, so the run folder is never
    nested and config paths name the same files in every process."""
    cwd = Path(cwd).resolve()
    if is_main_process:
        return cwd
    recorded = environ.get(LAUNCH_DIR_ENV)
    if recorded and Path(recorded).is_dir():
        return Path(recorded).resolve()
    if cwd.parent.name == RUNS_DIR:
        return cwd.parent.parent
    return cwd


def _config_paths(cfg: dict):
    """(container, key) of every config value that may name a local file or folder. Tolerates a
    config that has not been validated yet (wrong types are skipped; validation reports them)."""
    def d(x: Any) -> dict:
        return x if isinstance(x, dict) else {}

    def named(section: str):
        return [v for v in d(cfg.get(section)).values() if isinstance(v, dict)]

    yield cfg, "resources_dir"
    for b in named("base_models"):
        yield b, "path"
        yield b, "tokenizer"
        if isinstance(b.get("gguf"), dict) and not b["gguf"].get("package"):
            yield b["gguf"], "file"
    for g in named("generators"):
        yield g, "path"
    for c in named("corpora"):
        yield c, "definition"
    for a in named("arms"):
        if a.get("data") != "instruct":
            yield a, "data"
    sources = [d(cfg.get("posttrain_data")).get("source")]
    for b in named("benchmarks"):
        sources.append(b.get("source"))
        yield b, "local_file"
        yield b, "judge_prompt"
        yield b, "judge_validation"   # labelled answers of the judge gate: paths, or {path, ...}
        if isinstance(b.get("write"), dict):
            yield b["write"], "prompt_template"   # a model-written probe's own request template
        for k in list(d(b.get("task_args"))):  # inspect: dataset folders and files among the task's arguments
            yield b["task_args"], k
    for s in sources:
        if isinstance(s, dict):
            yield s, "path"
            yield s, "data_files"
    yield d(cfg.get("agreement")), "ratings"


def localize_paths(cfg: dict, roots: Iterable[str | Path], workdir: str | Path) -> dict:
    """A copy of the config whose relative local paths name the same files from `workdir`.

    Paths in a config are written relative to where Snakemake is started (the repository root),
    but the rules run inside the run folder. Each relative path that exists under one of `roots`
    (first match wins) is rewritten relative to `workdir`; everything else (hub ids, URLs, paths
    the run itself builds such as results/base_models/..., files that do not exist) is kept as
    written. A path found only under a later root (the workflow's folder when Snakemake is
    started elsewhere) becomes absolute."""
    import os

    out = copy.deepcopy(cfg)
    roots = [Path(r).resolve() for r in roots]
    workdir = Path(workdir).resolve()

    def fix(p: Any) -> Any:
        if isinstance(p, list):
            return [fix(x) for x in p]
        if isinstance(p, dict):
            return {k: fix(v) for k, v in p.items()}
        if not isinstance(p, str) or not p or os.path.isabs(p) or re.match(r"^[a-z][a-z0-9+.-]*://", p):
            return p
        for root in roots:
            target = root / p
            if target.exists():
                # relative inside the launch folder (a moved or copied checkout keeps working),
                # absolute for the fallback root (the workflow's own folder elsewhere)
                if target.is_relative_to(roots[0]) and workdir.is_relative_to(roots[0]):
                    return os.path.relpath(target, workdir)
                return str(target)
        return p

    for container, key in _config_paths(out):
        if container.get(key) is not None:
            container[key] = fix(container[key])
    return out


NAMED_SECTIONS = ("base_models", "generators", "corpora", "arms", "judges", "benchmarks")


def _sorted_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _sorted_keys(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, list):
        return [_sorted_keys(x) for x in obj]
    return obj


def canonical_order(cfg: dict) -> dict:
    """Sort keys inside every setting so that rules' params (compared by Snakemake to decide
    reruns) do not change when a config file merely lists keys in another order. The order of
    the named sections (arms, benchmarks, ...) is kept: it orders tables and plots."""
    out = {}
    for key, val in cfg.items():
        if key in NAMED_SECTIONS and isinstance(val, dict):
            out[key] = {name: _sorted_keys(entry) for name, entry in val.items()}
        else:
            out[key] = _sorted_keys(val)
    return out


def check_references(cfg: dict) -> None:
    """Cross-key checks the JSON schema cannot express (names that must exist)."""
    errs = reference_problems(cfg)
    if errs:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errs))


def _not_an_entry(key: str, value: Any, names: Iterable[str], what: str) -> str:
    names = sorted(names)
    return f"config key '{key}': {value!r} is not {what} ({names}){did_you_mean(value, names)}"


def reference_problems(cfg: dict) -> list[str]:
    """Cross-key problems the JSON schema cannot express (names that must exist), one per line."""
    errs: list[str] = []
    bases = set(cfg.get("base_models", {}))
    gens = set(cfg.get("generators", {}))
    judges = set(cfg.get("judges", {}))
    corpora = set(cfg.get("corpora", {}))
    arms = cfg.get("arms", {})
    name_re = re.compile(r"^[A-Za-z0-9_-]+$")
    from .sweeps import sweep_arms

    points = sweep_arms(cfg)
    for section in ("base_models", "arms", "benchmarks", "corpora", "judges", "generators"):
        for name in cfg.get(section, {}) or {}:
            if not name_re.match(name) and not (section == "arms" and name in points):
                errs.append(f"config key '{section}.{name}': names may use letters, digits, '_' and '-' only")
    for name, b in (cfg.get("base_models") or {}).items():
        if isinstance(b, dict) and b.get("build_tiny") and b.get("gguf"):
            errs.append(f"config key 'base_models.{name}': build_tiny and gguf exclude each other "
                        f"(both make the model at results/base_models/{name})")
    for name in bases & set(arms):
        errs.append(f"config key 'arms.{name}': the name is also a base model")
    from ..llm.registry import backend_info

    for name, g in (cfg.get("generators") or {}).items():
        if backend_info(g.get("backend")).local and g.get("model") not in bases:
            errs.append(_not_an_entry(f"generators.{name}.model", g.get('model'), bases, "a base_models entry"))
    for name, j in (cfg.get("judges") or {}).items():
        info = backend_info(j.get("backend"))
        if info.local and j.get("model") not in bases:
            errs.append(_not_an_entry(f"judges.{name}.model", j.get('model'), bases, "a base_models entry"))
        if j.get("calibration", "none") != "none" and (
                j.get("judge_mode") == "generate" or (j.get("judge_mode") != "logprob" and not info.logprobs)):
            errs.append(f"config key 'judges.{name}.calibration': {j['calibration']!r} calibrates label "
                        f"log-probabilities; it needs an hf judge (judge_mode auto or logprob)")
    for name, c in (cfg.get("corpora") or {}).items():
        if c.get("generator") not in gens:
            errs.append(_not_an_entry(f"corpora.{name}.generator", c.get('generator'), gens, "a generators entry"))
    idata = cfg.get("instruct_data") or {}
    if any(a.get("method") == "sft" and a.get("data") == "instruct" for a in arms.values()):
        if idata.get("generator") not in gens:
            errs.append(_not_an_entry("instruct_data.generator", idata.get('generator'), gens, "a generators entry"))
        if idata.get("corpus") and idata["corpus"] not in corpora:
            errs.append(_not_an_entry("instruct_data.corpus", idata['corpus'], corpora, "a corpora entry"))
    for name, a in arms.items():
        src = a.get("init_from")
        if src is not None:
            if src not in arms or src == name:
                errs.append(_not_an_entry(f"arms.{name}.init_from", src, arms, "another arms entry"))
                continue
            if arms[src].get("init_from"):
                errs.append(f"config key 'arms.{name}.init_from': {src!r} is itself a preservation arm; name a trained arm")
            if arms[src].get("base_model") != a.get("base_model"):
                errs.append(f"config key 'arms.{name}.base_model': must equal that of arms.{src} "
                            f"({arms[src].get('base_model')!r}) since it reuses that arm's model")
            if a.get("seeds") is not None:
                errs.append(f"config key 'arms.{name}.seeds': a preservation arm takes the seeds of arms.{src}")
            if a.get("replay_fraction", 0) > 0 and not (a.get("corpus") or arms[src].get("corpus")):
                errs.append(f"config key 'arms.{name}.replay_fraction': replay needs documents (a corpus here or on arms.{src})")
            continue
        if a.get("replay_fraction", 0) > 0 and not a.get("corpus"):
            errs.append(f"config key 'arms.{name}.replay_fraction': replay needs the arm's documents (set corpus)")
        seeds = a.get("seeds")
        if seeds is not None and len(set(seeds)) != len(seeds):
            errs.append(f"config key 'arms.{name}.seeds': seeds repeat ({seeds})")
        if a.get("base_model") not in bases:
            errs.append(_not_an_entry(f"arms.{name}.base_model", a.get('base_model'), bases, "a base_models entry"))
        if a.get("n_docs") is not None:
            key = f"sweeps.{points[name]}.vary.n_docs" if name in points else f"arms.{name}.n_docs"
            if not a.get("corpus"):
                errs.append(f"config key '{key}': n_docs takes the first documents of the arm's corpus; "
                            f"arms.{name} has none")
            for c in _as_list(a.get("corpus")):
                have = (cfg.get("corpora") or {}).get(c, {}).get("n")
                if isinstance(have, int) and a["n_docs"] > have:
                    errs.append(f"config key '{key}': {a['n_docs']} documents asked of corpus {c!r}, which plans "
                                f"{have} (corpora.{c}.n): raise it to the largest n_docs (the smaller ones are its prefixes)")
        if a.get("method") == "doc":
            for c in _as_list(a.get("corpus")):
                if c not in corpora:
                    errs.append(_not_an_entry(f"arms.{name}.corpus", c, corpora, "a corpora entry"))
            if not a.get("corpus"):
                errs.append(f"config key 'arms.{name}.corpus': a 'doc' arm needs a corpus")
    pt = cfg.get("posttrain") or {}
    sweeps = cfg.get("sweeps") or {}
    for a in pt.get("arms") if isinstance(pt.get("arms"), list) else []:
        if a not in arms and a not in sweeps:
            errs.append(_not_an_entry("posttrain.arms", a, [*arms, *sweeps], "an arms entry or a sweep"))
    for s in pt.get("sizes", []):
        if s not in (cfg.get("posttrain_data") or {}).get("sizes", []):
            errs.append(f"config key 'posttrain.sizes': {s} is not in posttrain_data.sizes")
    from ..evaluation.kinds import get_kind

    for name, b in (cfg.get("benchmarks") or {}).items():
        for j in b.get("judges", []) or []:
            if j not in judges:
                errs.append(_not_an_entry(f"benchmarks.{name}.judges", j, judges, "a judges entry"))
        kind = get_kind(b.get("kind"))   # the schema has checked the name
        if kind.stage == "judge" and not b.get("judges"):
            errs.append(f"config key 'benchmarks.{name}.judges': a {b['kind']} benchmark needs at least one judge")
        errs += kind.reference_problems(b, name)
    for name, b in (cfg.get("benchmarks") or {}).items():
        if b.get("corpus") is not None and b["corpus"] not in corpora:
            errs.append(_not_an_entry(f"benchmarks.{name}.corpus", b["corpus"], corpora, "a corpora entry"))
        if b.get("write") and b["write"].get("generator") not in gens:
            errs.append(_not_an_entry(f"benchmarks.{name}.write.generator", b["write"].get("generator"), gens,
                                      "a generators entry"))
    if not errs:
        from ..analysis.manipulation import manipulation_pairs

        try:
            manipulation_pairs(cfg)
        except ValueError as exc:
            errs.append(str(exc))
    models = set(all_models(cfg)) if not errs else set()
    for i, m in enumerate((cfg.get("evaluation") or {}).get("models", "all") if isinstance(
            (cfg.get("evaluation") or {}).get("models"), list) else []):
        if models and m not in models:
            errs.append(_not_an_entry(f"evaluation.models[{i}]", m, models, "a model"))
    for i, c in enumerate((cfg.get("stats") or {}).get("comparisons", [])):
        for side in ("a", "b"):
            if models and c.get(side) not in models:
                errs.append(_not_an_entry(f"stats.comparisons[{i}].{side}", c.get(side), models, "a model"))
    return errs


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


# ---------------------------------------------------------------------------------------------
# Derived views
# ---------------------------------------------------------------------------------------------

def base_model_names(cfg: dict) -> list[str]:
    return [n for n, b in cfg["base_models"].items() if b.get("evaluate", True)]


def posttrain_arms(cfg: dict) -> list[str]:
    pt = cfg.get("posttrain") or {}
    arms = pt.get("arms", "all")
    if arms == "all":
        return list(cfg["arms"])
    from .sweeps import sweep_arms   # a sweep's name stands for its points

    points = sweep_arms(cfg)
    out: list[str] = []
    for a in arms:
        for x in ([p for p, sweep in points.items() if sweep == a] if a in (cfg.get("sweeps") or {}) else [a]):
            if x not in out:
                out.append(x)
    return out


def posttrain_sizes(cfg: dict) -> list[int]:
    return list((cfg.get("posttrain") or {}).get("sizes", []))


def arm_seeds(cfg: dict, arm: str) -> list[int] | None:
    """The training seeds of an arm (a preservation arm has those of the arm it reuses);
    None when the arm trains once with training.seed."""
    a = cfg["arms"][arm]
    if a.get("init_from"):
        return arm_seeds(cfg, a["init_from"])
    seeds = a.get("seeds")
    return list(seeds) if seeds else None


def arm_units(cfg: dict, arm: str) -> list[str]:
    """Trained models of an arm: the arm itself, or ARM@SEED for each seed."""
    seeds = arm_seeds(cfg, arm)
    return [arm] if seeds is None else [f"{arm}@{s}" for s in seeds]


def split_unit(unit: str) -> tuple[str, int | None]:
    """'doc@1' -> ('doc', 1); 'doc' -> ('doc', None)."""
    arm, _, seed = unit.partition("@")
    return arm, (int(seed) if seed else None)


def train_units(cfg: dict) -> list[str]:
    return [u for arm in cfg["arms"] for u in arm_units(cfg, arm)]


def posttrain_units(cfg: dict) -> list[str]:
    return [f"{u}.post{n}" for arm in posttrain_arms(cfg) for u in arm_units(cfg, arm) for n in posttrain_sizes(cfg)]


def posttrain_models(cfg: dict) -> list[str]:
    return [f"{a}.post{n}" for a in posttrain_arms(cfg) for n in posttrain_sizes(cfg)]


def leaf_models(cfg: dict) -> list[str]:
    """Every model that is itself evaluated: base models, trained units, post-trained units."""
    return base_model_names(cfg) + train_units(cfg) + posttrain_units(cfg)


def seed_aggregates(cfg: dict) -> dict[str, list[str]]:
    """Seed-averaged models -> the seed models they average (only for arms with seeds)."""
    out: dict[str, list[str]] = {}
    for arm in cfg["arms"]:
        units = arm_units(cfg, arm)
        if units == [arm]:
            continue
        out[arm] = units
        if arm in posttrain_arms(cfg):
            for n in posttrain_sizes(cfg):
                out[f"{arm}.post{n}"] = [f"{u}.post{n}" for u in units]
    return out


def all_models(cfg: dict) -> list[str]:
    """Every model with metrics: base models, arms, arms after post-training (seed averages where
    an arm has seeds) and, for seeded arms, each seed's model."""
    named = base_model_names(cfg) + list(cfg["arms"]) + posttrain_models(cfg)
    return named + [m for m in leaf_models(cfg) if m not in named]


def eval_models(cfg: dict) -> list[str]:
    """Leaf models that get evaluated (evaluation.models selects among all_models; a seed
    average selects its seed models)."""
    sel = (cfg.get("evaluation") or {}).get("models", "all")
    leaves = leaf_models(cfg)
    if sel == "all":
        return leaves
    agg = seed_aggregates(cfg)
    chosen: list[str] = []
    for m in sel:
        chosen += agg.get(m, [m])
    return [m for m in leaves if m in chosen]


def reported_models(cfg: dict) -> list[str]:
    """Models in the summary: evaluated leaves plus the seed averages built from them."""
    leaves = set(eval_models(cfg))
    agg = {a: u for a, u in seed_aggregates(cfg).items() if set(u) <= leaves}
    return [m for m in all_models(cfg) if m in leaves or m in agg]


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def arm_train_cfg(cfg: dict, unit: str, posttrain: bool = False) -> dict:
    """Training hyperparameters of an arm (or seed unit ARM@SEED): `training` defaults, then the
    arm's overrides, then (for post-training) `posttrain.training` overrides; a unit's seed
    replaces training.seed."""
    arm, seed = split_unit(unit)
    t = {k: v for k, v in cfg["training"].items() if k != "resources"}
    t = deep_merge(t, cfg["arms"][arm].get("training", {}))
    if posttrain:
        t = deep_merge(t, (cfg.get("posttrain") or {}).get("training", {}))
    if seed is not None:
        t["seed"] = seed
    return t


def base_model_path(cfg: dict, name: str) -> str:
    b = cfg["base_models"][name]
    return f"results/base_models/{name}" if (b.get("build_tiny") or b.get("gguf")) else b["path"]


def base_model_cfg(cfg: dict, name: str) -> dict:
    b = dict(cfg["base_models"][name])
    b["path"] = base_model_path(cfg, name)
    return b


def resolve_backend(cfg: dict, entry: dict) -> dict:
    """A generators/judges entry with its `model` resolved to a model spec for a local backend."""
    from ..llm.registry import backend_info
    from ..models import base_spec

    out = dict(entry)
    if backend_info(entry.get("backend")).local:
        out["spec"] = base_spec(entry["model"], base_model_cfg(cfg, entry["model"]))
    return out


# ---------------------------------------------------------------------------------------------
# Reference documentation generated from the schema (config/README.md)
# ---------------------------------------------------------------------------------------------

def schema_markdown(schema_path: str | Path | None = None) -> str:
    """Every config key with its type, default and description, as Markdown tables (the keys of
    each benchmark kind in a table of its own)."""
    from ..evaluation.kinds import kind_names, kind_schema

    root = load_schema(schema_path)
    lines = [
        "# Configuration reference",
        "",
        "Generated from `config/schema.yaml` by `python -m doctune.workflow.config config/schema.yaml`;",
        "do not edit by hand. `NAME` stands for a name you choose (an arm, a benchmark, ...).",
        "Shipped configs: `config.yaml` (the preprint, default), `small.yaml` (one GPU, about an",
        "hour), `demo.yaml` (offline CPU demo). Unknown keys and wrong types stop the run before any",
        "job starts, naming the key.",
        "",
    ]

    def typ(s: dict) -> str:
        s = _resolve(s, root)
        if "enum" in s:
            return " \\| ".join("null" if v is None else f"`{v}`" for v in s["enum"])
        if "anyOf" in s:
            return " or ".join(typ(x) for x in s["anyOf"])
        t = s.get("type", "")
        return " or ".join(t) if isinstance(t, list) else str(t)

    def default(s: dict) -> str:
        if "default" not in s:
            return "required"
        return "`" + json_dumps(s["default"]) + "`"

    def walk(schema: dict, prefix: str, rows: list):
        schema = _resolve(schema, root)
        req = set(schema.get("required", []))
        own = schema.get("x-defaults") or {}
        for key, sub in (schema.get("properties") or {}).items():
            r = _resolve(sub, root)
            desc = (sub.get("description") or r.get("description") or "").replace("\n", " ").replace("|", "\\|")
            d = default(sub) if "default" in sub or key not in req else "required"
            if "default" not in sub and "default" in r:
                d = default(r)
            if key in own:
                d = default({"default": own[key]})
            rows.append((f"{prefix}{key}", typ(sub), d, desc))
            if r.get("type") == "object" or "properties" in r or isinstance(r.get("additionalProperties"), dict):
                walk(r, f"{prefix}{key}.", rows)
            elif isinstance(r.get("items"), dict) and (r["items"].get("properties")):
                walk(r["items"], f"{prefix}{key}[].", rows)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            walk(addl, f"{prefix}NAME.", rows)

    for key, sub in root["properties"].items():
        rows: list = []
        r = _resolve(sub, root)
        lines += [f"## `{key}`", "", (sub.get("description") or r.get("description") or "").strip(), ""]
        if r.get("type") == "object" and (r.get("properties") or isinstance(r.get("additionalProperties"), dict)):
            walk(r, f"{key}.", rows)
        else:
            rows.append((key, typ(sub), default(sub), ""))
        lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
        lines += [f"| `{k}` | {t} | {d} | {desc} |" for k, t, d, desc in rows]
        lines.append("")
        if key == "benchmarks":
            for kind in kind_names():
                doc = kind_schema(kind)
                rows = []
                walk({"type": "object", "properties": doc.get("properties") or {}}, "benchmarks.NAME.", rows)
                also = f" It also takes the keys of kind `{doc['extends']}`." if doc.get("extends") else ""
                lines += [f"### `benchmarks.NAME` with `kind: {kind}`", "",
                          f"Its own keys (src/doctune/evaluation/kinds/{kind}/schema.yaml), beside the ones above.{also}", ""]
                if rows:
                    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
                    lines += [f"| `{k}` | {t} | {d} | {desc} |" for k, t, d, desc in rows]
                lines.append("")
    return "\n".join(lines)


def json_dumps(v: Any) -> str:
    import json

    return json.dumps(v, ensure_ascii=False)


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(schema_markdown(sys.argv[1] if len(sys.argv) > 1 else "config/schema.yaml"))
