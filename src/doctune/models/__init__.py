"""Model loading (safetensors only, remote code off unless the config turns it on for that
model) and the tiny offline Llama + BPE tokenizer used by the demo and the tests.

A *model spec* describes everything needed to rebuild an evaluated model:
    {"name": "doc.post2500",
     "base": {"path": "meta-llama/Llama-3.1-8B", "revision": null, "trust_remote_code": false,
              "dtype": "bfloat16", "tokenizer": null},
     "adapters": [{"path": "results/models/doc", "merge": true},
                  {"path": "results/models/doc.post2500", "merge": false}]}
Each trained model directory holds such a spec as `model.json`; adapters are applied in order
(merged into the weights where "merge" is true, kept as a live peft adapter otherwise).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write_json, read_json, sha256_file, stable_hash

log = logging.getLogger(__name__)

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "auto": "auto"}

TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TINY_SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def resolve_dtype(name: str | None, device: str):
    import torch

    name = name or "auto"
    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, DTYPES[name])


def default_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def load_tokenizer(base: dict):
    from transformers import AutoTokenizer

    src = base.get("tokenizer") or base["path"]
    tok = AutoTokenizer.from_pretrained(
        src,
        revision=base.get("revision"),
        trust_remote_code=bool(base.get("trust_remote_code", False)),
    )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if base.get("chat_template"):
        tok.chat_template = base["chat_template"]
    return tok


def load_base_model(base: dict, device: str | None = None, dtype: str | None = None):
    """Load the base causal LM from safetensors weights only."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    torch_dtype = resolve_dtype(dtype or base.get("dtype"), device)
    kwargs: dict[str, Any] = dict(
        revision=base.get("revision"),
        trust_remote_code=bool(base.get("trust_remote_code", False)),
        use_safetensors=True,
        dtype=torch_dtype,
    )
    if base.get("attn_implementation"):
        kwargs["attn_implementation"] = base["attn_implementation"]
    model = AutoModelForCausalLM.from_pretrained(base["path"], **kwargs)
    return model.to(device)


def load_model(spec: dict | str | os.PathLike, device: str | None = None, dtype: str | None = None,
               merge_all: bool = False):
    """Load (model, tokenizer) for a model spec (dict or path to model.json / its directory).

    Adapters flagged merge=True are merged into the weights in order; the last unmerged one stays a
    live peft adapter unless merge_all is set. Returns the model in eval mode."""
    if not isinstance(spec, dict):
        p = Path(spec)
        spec = read_json(p / "model.json" if p.is_dir() else p)
    base = spec["base"]
    tok = load_tokenizer(base)
    model = load_base_model(base, device=device, dtype=dtype)
    adapters = spec.get("adapters") or []
    if adapters:
        from peft import PeftModel

        for i, ad in enumerate(adapters):
            model = PeftModel.from_pretrained(model, ad["path"], is_trainable=False)
            last = i == len(adapters) - 1
            if ad.get("merge", True) or not last or merge_all:
                model = model.merge_and_unload()
    model.eval()
    return model, tok


def base_spec(name: str, base_cfg: dict) -> dict:
    """The spec of an untrained model from a `base_models` entry of the config."""
    keys = ("path", "revision", "trust_remote_code", "dtype", "tokenizer", "chat_template",
            "attn_implementation")
    return {"name": name, "base": {k: base_cfg.get(k) for k in keys}, "adapters": []}


def write_spec(path: str | os.PathLike, spec: dict) -> None:
    atomic_write_json(path, spec)


# --------------------------------------------------------------------------------------------
# Tiny offline model
# --------------------------------------------------------------------------------------------

_FALLBACK_TEXT = """The committee reviewed the proposal and found that careful planning improved outcomes.
Researchers measured efficiency, resilience and long-term sustainability across many sites.
Urban density, transit access and housing supply shape how cities grow over decades.
Animals such as hens, pigs, fish, bees and cattle are sentient beings with welfare needs.
Question: What should I consider? Answer: Consider the evidence, the costs and who is affected.
"""


def _training_text(resources_dir: str | os.PathLike | None, text_files=None) -> list[str]:
    texts = [_FALLBACK_TEXT]
    if text_files:
        return texts + [Path(f).read_text(encoding="utf-8") for f in text_files]
    if resources_dir and (Path(resources_dir) / TINY_CORPUS).is_file():
        return texts + [(Path(resources_dir) / TINY_CORPUS).read_text(encoding="utf-8")]
    if resources_dir and Path(resources_dir).is_dir():
        for f in sorted(Path(resources_dir).rglob("*")):
            if f.is_file() and f.suffix in {".txt", ".yaml", ".yml", ".jsonl", ".json", ".md", ".csv"}:
                try:
                    texts.append(f.read_text(encoding="utf-8")[:200_000])
                except UnicodeDecodeError:
                    continue
    return texts


TINY_CORPUS = "fixtures/tiny_tokenizer_corpus.txt"


def build_tiny_model(out_dir: str | os.PathLike, *, resources_dir: str | os.PathLike | None = None,
                     text_files: list | None = None,
                     vocab_size: int = 2000, hidden_size: int = 64, intermediate_size: int = 128,
                     num_layers: int = 2, num_heads: int = 4, max_position_embeddings: int = 2048,
                     seed: int = 0) -> Path:
    """Train a byte-level BPE tokenizer on the project's own text (text_files, else
    RESOURCES/fixtures/tiny_tokenizer_corpus.txt) and save it with a randomly initialised
    Llama-architecture model (safetensors). Deterministic for a given seed and text."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=TINY_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(_training_text(resources_dir, text_files), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
        padding_side="left", chat_template=TINY_CHAT_TEMPLATE, model_max_length=max_position_embeddings,
    )
    tok.save_pretrained(out)

    torch.manual_seed(seed)
    end_id = tok.convert_tokens_to_ids("<|end|>")
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings, bos_token_id=tok.bos_token_id,
        eos_token_id=[tok.eos_token_id, end_id], pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, end_id], pad_token_id=tok.pad_token_id,
    )
    model.save_pretrained(out, safe_serialization=True)
    return out


# ---------------------------------------------------------------------------------------------
# What a model is: one fingerprint for caches (completions) and run keys (training)
# ---------------------------------------------------------------------------------------------

_SMALL = 512 * 1024 * 1024
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


def _path_fingerprint(path: str, names: tuple[str, ...] | None = None) -> str | None:
    """Hash of a local file or folder (only ``names`` in it, when given); None for a hub id.
    Files above 512 MB count by size and mtime (hashing many GB per job is not worth it)."""
    p = Path(path)
    if not p.exists():
        return None
    if p.is_file():
        files = [p]
    elif names is not None:
        files = [p / n for n in names if (p / n).is_file()]
    else:
        files = sorted(x for x in p.rglob("*") if x.is_file() and "checkpoints" not in x.parts)
    parts = []
    for f in files:
        st = f.stat()
        parts.append((f.name, sha256_file(f)) if st.st_size <= _SMALL else (f.name, st.st_size, int(st.st_mtime)))
    return stable_hash(parts, 32)


def model_fingerprint(spec: dict) -> str:
    """A hash of what a model *is*: its base (id, revision, tokenizer, chat template, dtype, and the
    files of a local folder) and each adapter's weights and config (not the training logs beside them)."""
    base = spec.get("base") or {}
    parts = [
        {k: base.get(k) for k in ("path", "revision", "tokenizer", "chat_template", "dtype")},
        _path_fingerprint(base["path"]) if base.get("path") else None,
        [(a["path"], a.get("merge"), _path_fingerprint(a["path"], ADAPTER_FILES)) for a in spec.get("adapters") or []],
    ]
    return stable_hash(parts, 32)
