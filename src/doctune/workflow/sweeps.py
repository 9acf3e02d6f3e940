"""Sweeps: ``sweeps.NAME: {arm, vary: {KEY: [v1, v2, ...]}, control}`` expanded into arms.

Each combination of the varied values (the grid of all keys, in the order written) becomes an arm
that copies ``arm`` and changes only those keys, named ``ARM~KEY=VALUE`` (``~KEY=VALUE`` per key,
in the order of ``vary``): ``doc~n_docs=500``, ``doc~learning_rate=0.0001~lora.r=8``. The points
follow their arm in ``arms`` (config order orders tables and figures), and are trained,
post-trained, evaluated and compared like any arm.

KEY resolution (``resolve_key``): an arm setting (``n_docs``, ``seeds``, ``corpus``...) or a
dotted path into one (``training.lora.r``); otherwise a training setting, as a shorthand for
``training.KEY`` (``learning_rate``, ``epochs``, ``seed``, ``lora.r``). A key that is neither, an
empty list, a value the schema or the training settings refuse, or a point whose name collides
with an arm: one problem line naming ``sweeps.NAME.vary.KEY`` (and the value's index).

Expansion is idempotent (a config that already holds the points, e.g. a job's copy, is left as
it is) and runs inside ``doctune.workflow.config.config_problems``, so the dry run and preflight
see the expanded arms.
"""
from __future__ import annotations

import copy
import itertools
import re
from typing import Any

SEP = "~"
NAME_RE = re.compile(r"^[A-Za-z0-9_.+=~-]+$")
VALUE_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")


def format_value(v: Any) -> str:
    """A value as it appears in a point's name: 500, 0.0001, 2e-05, true, a+b for a list."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "+".join(format_value(x) for x in v)
    return str(v)


def point_name(arm: str, values: dict[str, Any]) -> str:
    return arm + "".join(f"{SEP}{k}={format_value(v)}" for k, v in values.items())


def resolve_key(key: str, arm_props: dict, train_props: dict) -> list[str] | None:
    """The path into an arm a sweep key sets (module docstring), or None when it names nothing."""
    parts = key.split(".")
    if parts[0] in arm_props:
        if len(parts) > 1 and parts[0] != "training":
            return None
        return parts
    if parts[0] in train_props:
        return ["training", *parts]
    return None


def _set(d: dict, path: list[str], value: Any) -> None:
    for p in path[:-1]:
        d = d.setdefault(p, {})
        if not isinstance(d, dict):
            raise TypeError
    d[path[-1]] = copy.deepcopy(value)


def points(sweep: dict) -> list[dict[str, Any]]:
    """The grid of a sweep's values, one dict per point (first key slowest)."""
    keys = list(sweep["vary"])
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep["vary"][k] for k in keys))]


def sweep_arms(cfg: dict) -> dict[str, str]:
    """{point arm: sweep name} for every point of every sweep."""
    return {point_name(s["arm"], vals): name for name, s in (cfg.get("sweeps") or {}).items()
            if isinstance(s, dict) and isinstance(s.get("vary"), dict) and s.get("arm")
            for vals in points(s)}


def _training_problem(cfg: dict, arm: dict, schema: dict) -> str | None:
    """Why the training settings of a point are refused (the schema's training section, then the
    trainer's own checks), or None."""
    import jsonschema

    from ..training.config import resolve_train_cfg
    from .config import ConfigError, arm_train_cfg

    merged = arm_train_cfg({"training": cfg["training"], "arms": {"p": arm}}, "p")
    train_schema = {**schema["properties"]["training"], "$defs": schema.get("$defs", {})}
    errs = list(jsonschema.Draft202012Validator(train_schema).iter_errors(
        {**merged, "resources": cfg["training"].get("resources", {})}))
    if errs:
        e = errs[0]
        return f"training.{'.'.join(map(str, e.absolute_path))}: {e.message}"
    try:
        resolve_train_cfg(merged)
    except ConfigError as exc:
        return str(exc)
    return None


def expand_sweeps(cfg: dict, schema: dict) -> tuple[dict, list[str]]:
    """(cfg with the sweep points added to ``arms``, problems). cfg has the schema's defaults."""
    import jsonschema

    from .config import _describe, _fill_defaults, _not_an_entry, did_you_mean

    sweeps = cfg.get("sweeps") or {}
    if not sweeps:
        return cfg, []
    arms: dict = cfg["arms"]
    arm_schema = schema["properties"]["arms"]["additionalProperties"]
    arm_props = arm_schema["properties"]
    train_props = schema["properties"]["training"]["properties"]
    validator = jsonschema.Draft202012Validator(arm_schema)
    problems: list[str] = []
    new: dict[str, list[tuple[str, dict]]] = {}
    taken: dict[str, str] = {}
    for name, s in sweeps.items():
        where = f"sweeps.{name}"
        if s["arm"] not in arms or SEP in s["arm"]:
            names = [a for a in arms if SEP not in a]
            problems.append(f"config key '{where}.arm': {s['arm']!r} is not an arms entry ({sorted(names)})"
                            f"{did_you_mean(s['arm'], names)}")
            continue
        template = arms[s["arm"]]
        if template.get("init_from"):
            problems.append(f"config key '{where}.arm': {s['arm']!r} is a preservation arm (init_from); "
                            "sweep the arm it reuses")
            continue
        if s.get("control") is not None and s["control"] not in arms:
            problems.append(_not_an_entry(f"{where}.control", s["control"], arms, "an arms entry"))
        paths, bad = {}, False
        for key, values in s["vary"].items():
            path = resolve_key(key, arm_props, train_props)
            if path is None or path[0] == "init_from":
                choices = [k for k in arm_props if k != "init_from"] + [k for k in train_props if k != "resources"]
                problems.append(f"config key '{where}.vary.{key}': not an arm or training setting"
                                f"{did_you_mean(key, choices)} (arm: {', '.join(sorted(arm_props))}; "
                                f"training: {', '.join(sorted(k for k in train_props if k != 'resources'))})")
                bad = True
                continue
            if not values:
                problems.append(f"config key '{where}.vary.{key}': an empty list (give at least one value)")
                bad = True
                continue
            if len({format_value(v) for v in values}) != len(values):
                problems.append(f"config key '{where}.vary.{key}': values repeat ({values})")
                bad = True
                continue
            paths[key] = path
            for i, v in enumerate(values):       # each value on its own, so a problem names its index
                why = None
                if not VALUE_RE.match(format_value(v)):
                    why = "cannot name a point (letters, digits, '_', '.', '+', '-' only)"
                else:
                    arm = copy.deepcopy(template)
                    try:
                        _set(arm, path, v)
                    except TypeError:
                        why = f"cannot be set on arms.{s['arm']}"
                    else:
                        errs = list(validator.iter_errors(_fill_defaults(arm_schema, arm, schema)))
                        if errs:
                            why = _describe(errs[0]).split(": ", 1)[-1]
                        elif path[0] == "training":
                            why = _training_problem(cfg, arm, schema)
                if why:
                    problems.append(f"config key '{where}.vary.{key}[{i}]': {v!r}: {why}")
                    bad = True
        if bad:
            continue
        out = []
        for vals in points(s):
            arm = copy.deepcopy(template)
            label = ", ".join(f"{k}={format_value(v)}" for k, v in vals.items())
            for key, v in vals.items():
                _set(arm, paths[key], v)
            arm = _fill_defaults(arm_schema, arm, schema)
            if len(vals) > 1 and any(p[0] == "training" for p in paths.values()):
                why = _training_problem(cfg, arm, schema)   # a combination (each value alone was fine)
                if why:
                    problems.append(f"config key '{where}.vary' ({label}): {why}")
                    continue
            pname = point_name(s["arm"], vals)
            if pname in taken and taken[pname] != name:
                problems.append(f"config key '{where}': point {pname!r} is also a point of sweeps.{taken[pname]}")
                continue
            if pname in arms and arms[pname] != arm:
                problems.append(f"config key '{where}': point {pname!r} is also an arms entry with other settings")
                continue
            if not NAME_RE.match(pname) or ".post" in pname or "@" in pname:
                problems.append(f"config key '{where}': {pname!r} cannot name an arm")
                continue
            taken[pname] = name
            out.append((pname, arm))
        new.setdefault(s["arm"], []).extend(out)
    if problems:
        return cfg, problems
    expanded: dict = {}
    for a, v in arms.items():    # points already present (an expanded copy) equal theirs: kept once
        expanded.setdefault(a, v)
        for pname, parm in new.get(a, []):
            expanded.setdefault(pname, parm)
    return {**cfg, "arms": expanded}, []


def sweep_plan(cfg: dict) -> list[dict]:
    """What the dose-response stage needs to know of each sweep (doctune.analysis.dose_response):
    name, arm, keys, control (the sweep's, else the arm's matched control in the manipulation
    check, else None), the untrained base model, and the points in grid order."""
    from ..analysis.manipulation import manipulation_pairs

    out = []
    try:
        pairs = manipulation_pairs(cfg)
    except ValueError:
        pairs = []
    for name, s in (cfg.get("sweeps") or {}).items():
        control = s.get("control")
        if control is None:
            control = next((p["control"] for p in pairs if p["arm"] == s["arm"]), None)
        base = cfg["arms"][s["arm"]]["base_model"]
        out.append({"name": name, "arm": s["arm"], "keys": list(s["vary"]), "control": control,
                    "base": base if (cfg["base_models"][base].get("evaluate", True)) else None,
                    "points": [{"arm": point_name(s["arm"], v), "values": v} for v in points(s)]})
    return out


def describe_sweeps(cfg: dict) -> list[str]:
    """One line per sweep for the dry run: its points, what each changes."""
    out = []
    for s in sweep_plan(cfg):
        names = [p["arm"] for p in s["points"]]
        out.append(f"doctune: sweep {s['name']}: arm {s['arm']} x {' x '.join(s['keys'])} -> {len(names)} arms: "
                   f"{', '.join(names)}; compared with {s['control'] or '(no control)'}")
    return out
