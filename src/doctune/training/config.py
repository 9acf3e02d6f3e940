"""The `training:` config slice: types and validation; its defaults are config/schema.yaml's.

`resolve_train_cfg(train_cfg)` fills defaults (``defaults()``: the schema's `training` object) and
checks every key; an unknown key or a value of the wrong type raises ConfigError naming the key (so
a typo never silently trains with defaults).
"""
from __future__ import annotations

import copy
from typing import Any

from ..workflow.config import ConfigError  # noqa: F401  (one ConfigError for every config key)

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# key: the types a value may have (the defaults and descriptions are config/schema.yaml's: training)
TYPES: dict[str, tuple] = {
    "seq_len": (int,),
    "batch_size": (int,),
    "grad_accum": (int,),
    "epochs": (int, float),
    "max_steps": (int, type(None)),
    "max_tokens": (int, type(None)),
    "learning_rate": (int, float),
    "lr_scheduler": (str,),
    "warmup_ratio": (int, float),
    "weight_decay": (int, float),
    "adam_beta1": (int, float),
    "adam_beta2": (int, float),
    "adam_epsilon": (int, float),
    "max_grad_norm": (int, float, type(None)),
    "log_every": (int,),
    "save_every": (int,),
    "save_total_limit": (int,),
    "keep_checkpoints": (bool,),
    "lora": (dict,),
    "full_finetune": (bool,),
    "bf16": (bool,),
    "gradient_checkpointing": (bool,),
    "attn_implementation": (str, type(None)),
    "seed": (int,),
    "shuffle": (bool,),
    "packing": (bool,),
    "packing_boundaries": (bool,),
    "add_bos": (bool,),
    "peak_tflops": (int, float, type(None)),
    "fused_adamw": (bool,),
    "compile": (bool,),
    "loss_chunking": (bool,),
    "loss_chunk_size": (int,),
}
# alias accepted for the same setting: chunked_ce: N (int) == loss_chunking: true, loss_chunk_size: N;
# chunked_ce: null leaves loss_chunking as given
ALIASES = {"chunked_ce"}
LORA_TYPES: dict[str, tuple] = {"r": (int,), "alpha": (int, float), "dropout": (int, float),
                                 "target_modules": (list, str), "bias": (str,)}
# keys other stages keep in the same config slice (e.g. SLURM resources); ignored here
IGNORED_KEYS = {"resources"}
ATTN_IMPLEMENTATIONS = {None, "sdpa", "flash_attention_2", "flash_attention_3", "eager", "flex_attention"}


def defaults() -> dict:
    """The training defaults: config/schema.yaml's `training` object (without `resources`)."""
    from ..workflow.config import schema_defaults

    d = schema_defaults("properties", "training")
    for key in IGNORED_KEYS:
        d.pop(key, None)
    return d


def _check(key: str, value: Any, types: tuple) -> None:
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"training.{key}: expected {'/'.join(t.__name__ for t in types)}, got bool {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"training.{key}: expected {'/'.join(t.__name__ for t in types)}, "
                          f"got {type(value).__name__} {value!r}")


def _numbers(cfg: dict, spec: dict) -> dict:
    """'1e-3' (a string to YAML 1.1) -> 0.001 for keys that take numbers (spec: key -> types)."""
    from ..workflow.config import as_number

    out = dict(cfg)
    for key, value in cfg.items():
        types = spec.get(key, ())
        if isinstance(value, str) and str not in types:
            if float in types:
                out[key] = as_number(value)
            elif int in types:
                out[key] = as_number(value, integer=True)
    return out


def resolve_train_cfg(train_cfg: dict | None) -> dict:
    """Defaults filled in, types checked; returns a new dict (LoRA settings under "lora")."""
    train_cfg = _numbers(dict(train_cfg or {}), TYPES)
    default = defaults()
    if "chunked_ce" in train_cfg:
        chunk = train_cfg.pop("chunked_ce")
        if chunk is not None:
            _check("chunked_ce", chunk, (int,))
            if chunk < 1:
                raise ConfigError(f"training.chunked_ce: must be >= 1 or null, got {chunk}")
            train_cfg["loss_chunking"] = True
            train_cfg["loss_chunk_size"] = chunk
    out: dict[str, Any] = {}
    for key in train_cfg:
        if key not in TYPES and key not in IGNORED_KEYS:
            from ..workflow.config import did_you_mean

            raise ConfigError(f"training.{key}: unknown key{did_you_mean(key, TYPES)} "
                              f"(known: {', '.join(sorted(TYPES))})")
    for key, types in TYPES.items():
        if key == "lora":
            continue
        value = train_cfg.get(key, copy.deepcopy(default[key]))
        if value is not None or type(None) not in types:
            _check(key, value, types)
        out[key] = value
    lora_in = train_cfg.get("lora") or {}
    if not isinstance(lora_in, dict):
        raise ConfigError(f"training.lora: expected a mapping, got {type(lora_in).__name__}")
    lora: dict[str, Any] = {}
    lora_in = _numbers(lora_in, LORA_TYPES)
    for key in lora_in:
        if key not in LORA_TYPES:
            from ..workflow.config import did_you_mean

            raise ConfigError(f"training.lora.{key}: unknown key{did_you_mean(key, LORA_TYPES)} "
                              f"(known: {', '.join(LORA_TYPES)})")
    for key, types in LORA_TYPES.items():
        value = lora_in.get(key, copy.deepcopy(default["lora"][key]))
        _check(f"lora.{key}", value, types)
        lora[key] = value
    out["lora"] = lora
    for key in ("seq_len", "batch_size", "grad_accum", "log_every", "loss_chunk_size"):
        if out[key] < 1:
            raise ConfigError(f"training.{key}: must be >= 1, got {out[key]}")
    for key in ("save_every", "save_total_limit"):
        if out[key] < 0:
            raise ConfigError(f"training.{key}: must be >= 0, got {out[key]}")
    if out["max_tokens"] is not None and out["max_tokens"] < 1:
        raise ConfigError(f"training.max_tokens: must be >= 1 or null, got {out['max_tokens']}")
    if out["max_steps"] is not None and out["max_steps"] < 0:
        raise ConfigError(f"training.max_steps: must be >= 0 or null, got {out['max_steps']}")
    if out["epochs"] <= 0 and not out["max_steps"]:
        raise ConfigError("training.epochs: must be > 0 when max_steps is not set")
    if not 0.0 <= out["warmup_ratio"] < 1.0:
        raise ConfigError(f"training.warmup_ratio: must be in [0, 1), got {out['warmup_ratio']}")
    if out["attn_implementation"] not in ATTN_IMPLEMENTATIONS:
        raise ConfigError(f"training.attn_implementation: {out['attn_implementation']!r} is not one of "
                          f"{sorted(x for x in ATTN_IMPLEMENTATIONS if x)}")
    if lora["r"] < 1:
        raise ConfigError(f"training.lora.r: must be >= 1, got {lora['r']}")
    return out
