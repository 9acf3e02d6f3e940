"""The `training:` config slice: defaults, types and validation.

`resolve_train_cfg(train_cfg)` fills defaults and checks every key; an unknown key or a value of
the wrong type raises ConfigError naming the key (so a typo never silently trains with defaults).
"""
from __future__ import annotations

import copy
from typing import Any

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

# key: (default, allowed types, description)
SPEC: dict[str, tuple[Any, tuple, str]] = {
    "seq_len": (2048, (int,), "tokens per packed training sequence"),
    "batch_size": (1, (int,), "sequences per micro-batch per process"),
    "grad_accum": (1, (int,), "micro-batches per optimizer step"),
    "epochs": (1, (int, float), "passes over the data (ignored when max_steps is set)"),
    "max_steps": (None, (int, type(None)), "optimizer steps; null or 0 = derived from epochs"),
    "max_tokens": (None, (int, type(None)), "train for the optimizer steps it takes to see this many "
                                            "tokens (wins over max_steps and epochs); null = off"),
    "learning_rate": (2e-4, (int, float), "peak learning rate"),
    "lr_scheduler": ("linear", (str,), "transformers scheduler name: linear, cosine, constant_with_warmup, ..."),
    "warmup_ratio": (0.0, (int, float), "fraction of steps for linear warm-up"),
    "weight_decay": (0.0, (int, float), "AdamW weight decay"),
    "adam_beta1": (0.9, (int, float), "AdamW beta1"),
    "adam_beta2": (0.999, (int, float), "AdamW beta2"),
    "adam_epsilon": (1e-8, (int, float), "AdamW epsilon"),
    "max_grad_norm": (1.0, (int, float, type(None)), "gradient clipping norm; null = no clipping"),
    "log_every": (10, (int,), "optimizer steps between train_metrics.jsonl rows"),
    "save_every": (100, (int,), "optimizer steps between checkpoints (0 = only at the end / on SIGTERM)"),
    "save_total_limit": (2, (int,), "checkpoints kept in out_dir/checkpoints"),
    "keep_checkpoints": (False, (bool,), "keep checkpoints/ after a finished run"),
    "lora": (None, (dict,), "LoRA settings: r, alpha, dropout, target_modules, bias"),
    "full_finetune": (False, (bool,), "train all weights instead of a LoRA adapter"),
    "bf16": (True, (bool,), "bfloat16 weights/autocast on CUDA (ignored with a warning on CPU)"),
    "gradient_checkpointing": (True, (bool,), "recompute activations in the backward pass"),
    "attn_implementation": ("sdpa", (str, type(None)), "sdpa, flash_attention_2 or eager"),
    "seed": (0, (int,), "seed for adapter init, data order and dropout"),
    "shuffle": (True, (bool,), "shuffle packed sequences each epoch (seeded)"),
    "packing": (True, (bool,), "sft: pack several examples per sequence (documents are always packed)"),
    "packing_boundaries": (True, (bool,), "position ids restart per packed document/example so attention does not "
                                          "cross them (false: plain concatenation, attention across documents)"),
    "add_bos": (True, (bool,), "doc: start each document with the tokenizer's BOS token"),
    "peak_tflops": (None, (int, float, type(None)), "per-device peak bf16 TFLOP/s for MFU; null = auto for known GPUs"),
    "fused_adamw": (True, (bool,), "use torch's fused AdamW on CUDA"),
    "compile": (False, (bool,), "torch.compile the model"),
    "loss_chunking": (False, (bool,), "chunked cross-entropy: never materialise the full logits tensor"),
    "loss_chunk_size": (1024, (int,), "tokens per chunk for chunked cross-entropy"),
}
# alias accepted for the same setting: chunked_ce: N (int) == loss_chunking: true, loss_chunk_size: N;
# chunked_ce: null leaves loss_chunking as given
ALIASES = {"chunked_ce"}
LORA_SPEC: dict[str, tuple[Any, tuple]] = {
    "r": (16, (int,)),
    "alpha": (32, (int, float)),
    "dropout": (0.05, (int, float)),
    "target_modules": (ALL_PROJECTIONS, (list, str)),
    "bias": ("none", (str,)),
}
# keys other stages keep in the same config slice (e.g. SLURM resources); ignored here
IGNORED_KEYS = {"resources"}
ATTN_IMPLEMENTATIONS = {None, "sdpa", "flash_attention_2", "flash_attention_3", "eager", "flex_attention"}


class ConfigError(ValueError):
    """A bad training config value; the message names the key."""


def _check(key: str, value: Any, types: tuple) -> None:
    if isinstance(value, bool) and bool not in types:
        raise ConfigError(f"training.{key}: expected {'/'.join(t.__name__ for t in types)}, got bool {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"training.{key}: expected {'/'.join(t.__name__ for t in types)}, "
                          f"got {type(value).__name__} {value!r}")


def _numbers(cfg: dict, spec: dict) -> dict:
    """'1e-3' (a string to YAML 1.1) -> 0.001 for keys that take numbers."""
    from ..config import as_number

    out = dict(cfg)
    for key, value in cfg.items():
        types = spec[key][1] if key in spec else ()
        if isinstance(value, str) and str not in types:
            if float in types:
                out[key] = as_number(value)
            elif int in types:
                out[key] = as_number(value, integer=True)
    return out


def resolve_train_cfg(train_cfg: dict | None) -> dict:
    """Defaults filled in, types checked; returns a new dict (LoRA settings under "lora")."""
    train_cfg = _numbers(dict(train_cfg or {}), SPEC)
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
        if key not in SPEC and key not in IGNORED_KEYS:
            from ..config import did_you_mean

            raise ConfigError(f"training.{key}: unknown key{did_you_mean(key, SPEC)} "
                              f"(known: {', '.join(sorted(SPEC))})")
    for key, (default, types, _) in SPEC.items():
        if key == "lora":
            continue
        value = train_cfg.get(key, copy.deepcopy(default))
        if value is not None or type(None) not in types:
            _check(key, value, types)
        out[key] = value
    lora_in = train_cfg.get("lora") or {}
    if not isinstance(lora_in, dict):
        raise ConfigError(f"training.lora: expected a mapping, got {type(lora_in).__name__}")
    lora: dict[str, Any] = {}
    lora_in = _numbers(lora_in, LORA_SPEC)
    for key in lora_in:
        if key not in LORA_SPEC:
            from ..config import did_you_mean

            raise ConfigError(f"training.lora.{key}: unknown key{did_you_mean(key, LORA_SPEC)} "
                              f"(known: {', '.join(LORA_SPEC)})")
    for key, (default, types) in LORA_SPEC.items():
        value = lora_in.get(key, copy.deepcopy(default))
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
