"""Config validation against config/schema.yaml, with defaults filled in, plus the derived views
the workflow needs (which models exist, what each arm trains on, resolved backend configs)."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Iterable

import yaml


class ConfigError(ValueError):
    """A config key or value is wrong; the message names the key and what was expected."""


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
    if isinstance(instance, dict) and schema.get("type") == "object":
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


def _describe(err) -> str:
    key = _key_path(err.absolute_path)
    v = err.validator
    if v == "additionalProperties":
        extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
        allowed = ", ".join(sorted(err.schema.get("properties", {}))) or "(none)"
        return f"config key '{key}': unknown key(s) {', '.join(map(repr, extra))}; allowed: {allowed}"
    if v == "type":
        return f"config key '{key}': expected {err.validator_value}, got {type(err.instance).__name__} {err.instance!r}"
    if v == "enum":
        return f"config key '{key}': {err.instance!r} is not one of {err.validator_value}"
    if v == "required":
        return f"config key '{key}': {err.message}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "minLength", "pattern"):
        return f"config key '{key}': {err.message}"
    return f"config key '{key}': {err.message}"


def validate_config(config: dict, schema_path: str | Path) -> dict:
    """Validate (and fill defaults into) a config dict. Raises ConfigError naming the key."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text(encoding="utf-8"))
    cfg = _fill_defaults(schema, copy.deepcopy(dict(config)))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(list(e.absolute_path)), list(map(str, e.absolute_path))))
    if errors:
        msgs = [_describe(e) for e in errors[:10]]
        raise ConfigError("invalid config:\n  " + "\n  ".join(msgs))
    check_references(cfg)
    return cfg


def check_references(cfg: dict) -> None:
    """Cross-key checks the JSON schema cannot express (names that must exist)."""
    errs: list[str] = []
    bases = set(cfg.get("base_models", {}))
    gens = set(cfg.get("generators", {}))
    judges = set(cfg.get("judges", {}))
    corpora = set(cfg.get("corpora", {}))
    arms = cfg.get("arms", {})
    name_re = re.compile(r"^[A-Za-z0-9_-]+$")
    for section in ("base_models", "arms", "benchmarks", "corpora", "judges", "generators"):
        for name in cfg.get(section, {}) or {}:
            if not name_re.match(name):
                errs.append(f"config key '{section}.{name}': names may use letters, digits, '_' and '-' only")
    for name in bases & set(arms):
        errs.append(f"config key 'arms.{name}': the name is also a base model")
    for name, g in (cfg.get("generators") or {}).items():
        if g.get("backend") == "hf" and g.get("model") not in bases:
            errs.append(f"config key 'generators.{name}.model': {g.get('model')!r} is not a base_models entry ({sorted(bases)})")
    for name, j in (cfg.get("judges") or {}).items():
        if j.get("backend") == "hf" and j.get("model") not in bases:
            errs.append(f"config key 'judges.{name}.model': {j.get('model')!r} is not a base_models entry ({sorted(bases)})")
    for name, c in (cfg.get("corpora") or {}).items():
        if c.get("generator") not in gens:
            errs.append(f"config key 'corpora.{name}.generator': {c.get('generator')!r} is not a generators entry ({sorted(gens)})")
    idata = cfg.get("instruct_data") or {}
    if any(a.get("method") == "sft" and a.get("data") == "instruct" for a in arms.values()):
        if idata.get("generator") not in gens:
            errs.append(f"config key 'instruct_data.generator': {idata.get('generator')!r} is not a generators entry ({sorted(gens)})")
        if idata.get("corpus") and idata["corpus"] not in corpora:
            errs.append(f"config key 'instruct_data.corpus': {idata['corpus']!r} is not a corpora entry ({sorted(corpora)})")
    for name, a in arms.items():
        if a.get("base_model") not in bases:
            errs.append(f"config key 'arms.{name}.base_model': {a.get('base_model')!r} is not a base_models entry ({sorted(bases)})")
        if a.get("method") == "doc":
            for c in _as_list(a.get("corpus")):
                if c not in corpora:
                    errs.append(f"config key 'arms.{name}.corpus': {c!r} is not a corpora entry ({sorted(corpora)})")
            if not a.get("corpus"):
                errs.append(f"config key 'arms.{name}.corpus': a 'doc' arm needs a corpus")
    pt = cfg.get("posttrain") or {}
    for a in pt.get("arms") if isinstance(pt.get("arms"), list) else []:
        if a not in arms:
            errs.append(f"config key 'posttrain.arms': {a!r} is not an arms entry ({sorted(arms)})")
    for s in pt.get("sizes", []):
        if s not in (cfg.get("posttrain_data") or {}).get("sizes", []):
            errs.append(f"config key 'posttrain.sizes': {s} is not in posttrain_data.sizes")
    for name, b in (cfg.get("benchmarks") or {}).items():
        for j in b.get("judges", []) or []:
            if j not in judges:
                errs.append(f"config key 'benchmarks.{name}.judges': {j!r} is not a judges entry ({sorted(judges)})")
        if b.get("kind") in JUDGED_KINDS and not b.get("judges"):
            errs.append(f"config key 'benchmarks.{name}.judges': a {b['kind']} benchmark needs at least one judge")
    models = set(all_models(cfg)) if not errs else set()
    for i, c in enumerate((cfg.get("stats") or {}).get("comparisons", [])):
        for side in ("a", "b"):
            if models and c.get(side) not in models:
                errs.append(f"config key 'stats.comparisons[{i}].{side}': {c.get(side)!r} is not a model ({sorted(models)})")
    if errs:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errs))


JUDGED_KINDS = ("ahb", "compassion", "strongreject")


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
    return list(cfg["arms"]) if arms == "all" else list(arms)


def posttrain_models(cfg: dict) -> list[str]:
    sizes = (cfg.get("posttrain") or {}).get("sizes", [])
    return [f"{a}.post{n}" for a in posttrain_arms(cfg) for n in sizes]


def all_models(cfg: dict) -> list[str]:
    """Every model that gets evaluated: base models, arms, arms after post-training."""
    return base_model_names(cfg) + list(cfg["arms"]) + posttrain_models(cfg)


def eval_models(cfg: dict) -> list[str]:
    sel = (cfg.get("evaluation") or {}).get("models", "all")
    models = all_models(cfg)
    return models if sel == "all" else [m for m in models if m in sel]


def deep_merge(a: dict, b: dict) -> dict:
    out = copy.deepcopy(a)
    for k, v in (b or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def arm_train_cfg(cfg: dict, arm: str, posttrain: bool = False) -> dict:
    """Training hyperparameters of an arm: `training` defaults, then the arm's overrides, then
    (for post-training) `posttrain.training` overrides."""
    t = {k: v for k, v in cfg["training"].items() if k != "resources"}
    t = deep_merge(t, cfg["arms"][arm].get("training", {}))
    if posttrain:
        t = deep_merge(t, (cfg.get("posttrain") or {}).get("training", {}))
    return t


def base_model_path(cfg: dict, name: str) -> str:
    b = cfg["base_models"][name]
    return f"results/base_models/{name}" if b.get("build_tiny") else b["path"]


def base_model_cfg(cfg: dict, name: str) -> dict:
    b = dict(cfg["base_models"][name])
    b["path"] = base_model_path(cfg, name)
    return b


def resolve_backend(cfg: dict, entry: dict) -> dict:
    """A generators/judges entry with its `model` resolved to a model spec for the hf backend."""
    from .models import base_spec

    out = dict(entry)
    if entry.get("backend") == "hf":
        out["spec"] = base_spec(entry["model"], base_model_cfg(cfg, entry["model"]))
    return out
