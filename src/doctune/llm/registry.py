"""The LLM backends: one registry, each backend with its declared capabilities.

    from .registry import make_backend, backend_info
    backend = make_backend(cfg)            # cfg["backend"] names the backend; "auto" picks one
    backend_info("gemini").api             # True: an API, priced per token, with a key variable

A backend is a class in its own module (``gemini.py``, ``hf.py``, ``vllm_backend.py``) behind the
interface of ``base.py``; nothing outside its module and this table branches on a backend's name:
callers ask for a capability instead. ``file`` is not a model: documents read from a file or a
dataset (``doctune.documents.generate``).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BackendInfo:
    name: str
    #: the module and class that implement it (None: no model to call)
    module: str | None
    cls: str | None = None
    #: runs a local model (a base_models entry, given to it as a model spec) on this machine's devices
    local: bool = False
    #: scores options by log-probability (``option_logprobs``): judges read labels from it
    logprobs: bool = False
    #: a remote API: needs a key in the environment (``api_key_env``) and is priced per token
    #: (``price_in_per_mtok``, ``price_out_per_mtok``)
    api: bool = False
    #: has a batch API (``batch_api: true``)
    batch_api: bool = False
    #: reads finished documents from a file or dataset instead of generating them
    source: bool = False
    #: generates completions of evaluated models (``evaluation.generation.backend``)
    completions: bool = False


BACKENDS: dict[str, BackendInfo] = {b.name: b for b in (
    BackendInfo("gemini", "doctune.llm.gemini", "GeminiBackend", api=True, batch_api=True),
    BackendInfo("hf", "doctune.llm.hf", "HFBackend", local=True, logprobs=True, completions=True),
    BackendInfo("vllm", "doctune.llm.vllm_backend", "VLLMBackend", local=True, completions=True),
    BackendInfo("file", None, source=True),
)}
#: the local backend that scores answer log-probabilities (log-prob benchmarks, hf judges)
SCORER = "hf"


def backend_info(name: str | None) -> BackendInfo:
    if name not in BACKENDS:
        from ..workflow.config import did_you_mean

        raise ValueError(f"unknown backend {name!r} (known: {sorted(BACKENDS)}){did_you_mean(str(name), BACKENDS)}")
    return BACKENDS[name]


def resolve_completions_backend(name: str | None) -> str:
    """``evaluation.generation.backend``: a completions backend, or "auto" = vLLM when it is
    installed and a GPU is present, else transformers."""
    name = name or "auto"
    if name == "auto":
        from .vllm_backend import vllm_available

        return "vllm" if vllm_available() else "hf"
    known = sorted(n for n, b in BACKENDS.items() if b.completions)
    if name not in known:
        raise ValueError(f"generation.backend must be 'auto' or one of {known}, got {name!r}")
    return name


def make_backend(cfg: dict, **kw: Any):
    """Build the backend ``cfg["backend"]`` names from its resolved config (for local backends,
    ``cfg["spec"]`` is the model spec; see doctune.workflow.config.resolve_backend)."""
    info = backend_info(cfg.get("backend"))
    if info.module is None:
        raise ValueError(f"backend {info.name!r} calls no model (it reads documents from a file)")
    return getattr(importlib.import_module(info.module), info.cls)(cfg, **kw)
