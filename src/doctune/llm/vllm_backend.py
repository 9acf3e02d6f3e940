"""Optional vLLM generation backend (used by `generation.backend: auto` when vLLM is importable and a
GPU is present; `backend: vllm` asks for it explicitly).

vLLM is not part of the pinned environment and cannot be installed on the CPU machines the tests
run on: the test suite runs this module against a stand-in `vllm` package with the same names
(tests/test_vllm_backend.py), which checks how specs, prompts, seeds and results are mapped, not
vLLM itself. It is written against vLLM's public offline API (`vllm.LLM`, `SamplingParams`,
`LoRARequest`, `TokensPrompt`) and imports vLLM lazily, so importing doctune never needs it.

How a model spec is served:
* no adapters: the base model directory is loaded as is;
* one adapter with merge=false (an arm's own LoRA): the base is loaded with `enable_lora=True` and
  the adapter is applied per request through a `LoRARequest`, with no merging;
* adapters with merge=true (post-trained models: the arm's adapter merged, then the post-training
  adapter): the merged chain is written once to a temporary directory with
  `doctune.models.load_model(..., merge=...)` and served from there; a final unmerged adapter is
  still applied as a LoRARequest.

Prompts are rendered with the model's chat template exactly as in `doctune.llm.hf` and passed as
token ids. Each request carries its own `seed` in SamplingParams, so a sample depends only on its
seed (vLLM's per-request generator), not on the batch.
"""
from __future__ import annotations

import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import stable_hash
from .base import FINISH_LENGTH, FINISH_STOP, GenRequest, GenResult, ProgressFn

log = logging.getLogger(__name__)


def vllm_available() -> bool:
    """True when vLLM can be imported and CUDA is present."""
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


class VLLMBackend:
    sampler = "vllm"

    def __init__(self, cfg: dict, **_: Any):
        from vllm import LLM

        from ..models import load_model, load_tokenizer

        self.spec = cfg["spec"]
        self.name = str(self.spec.get("name", "model"))
        self.repetition_penalty = float(cfg.get("repetition_penalty") or 1.0)
        self.model_id = f"vllm:{self.name}:{stable_hash(self.spec)}"
        if self.repetition_penalty != 1.0:
            self.model_id += f":rp{self.repetition_penalty:g}"
        self.kind = "vllm"
        base = self.spec["base"]
        adapters = list(self.spec.get("adapters") or [])
        live = adapters[-1] if adapters and not adapters[-1].get("merge", True) else None
        merged = adapters[:-1] if live else adapters
        self._tmp = None
        model_dir = base["path"]
        if merged:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"doctune-vllm-{self.name}-")
            m, tok = load_model({**self.spec, "adapters": merged}, device="cpu", dtype=base.get("dtype"),
                                merge_all=True)
            m.save_pretrained(self._tmp.name, safe_serialization=True)
            tok.save_pretrained(self._tmp.name)
            model_dir = self._tmp.name
            del m
        self.tok = load_tokenizer(base)
        kw: dict[str, Any] = dict(model=model_dir, tokenizer=base.get("tokenizer") or model_dir,
                                  revision=None if merged else base.get("revision"),
                                  trust_remote_code=bool(base.get("trust_remote_code", False)),
                                  dtype=base.get("dtype") or "auto", seed=int(cfg.get("seed", 0)))
        if cfg.get("gpu_memory_utilization"):
            kw["gpu_memory_utilization"] = float(cfg["gpu_memory_utilization"])
        self.lora = None
        if live:
            import json

            from vllm.lora.request import LoRARequest

            rank = int(json.loads((Path(live["path"]) / "adapter_config.json").read_text())["r"])
            kw.update(enable_lora=True, max_lora_rank=max(8, rank), max_loras=1)
            self.lora = LoRARequest(f"{self.name}-adapter", 1, str(live["path"]))
        self.chunk = int(cfg.get("vllm_chunk") or 1024)
        self.llm = LLM(**kw)
        eos = self.tok.eos_token_id
        self.eos_ids = [eos] if eos is not None else []

    def _prompt_ids(self, req: GenRequest) -> list[int]:
        if req.raw_prompt:
            return list(self.tok(req.messages[0]["content"], add_special_tokens=True)["input_ids"])
        text = self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)
        return list(self.tok(text, add_special_tokens=False)["input_ids"])

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 on_result: Callable[[GenResult], None] | None = None) -> list[GenResult]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        from .hf import balanced_batches

        results = []
        # vLLM batches continuously inside one call; calls of at most `chunk` requests let the
        # caller cache each call's results, so a killed job loses one call's work at most
        for part in balanced_batches(list(range(len(requests))), self.chunk):
            reqs = [requests[i] for i in part]
            prompts, params = [], []
            for r in reqs:
                prompts.append(TokensPrompt(prompt_token_ids=self._prompt_ids(r)))
                params.append(SamplingParams(max_tokens=int(r.max_new_tokens), temperature=float(r.temperature),
                                             top_p=float(r.top_p), seed=int(r.seed or 0),
                                             repetition_penalty=self.repetition_penalty,
                                             stop_token_ids=self.eos_ids or None))
            outs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=True)
            if len(outs) != len(reqs):
                raise RuntimeError(f"vLLM returned {len(outs)} outputs for {len(reqs)} prompts")
            for r, o in zip(reqs, outs):
                c = o.outputs[0]
                reason = FINISH_LENGTH if c.finish_reason == "length" else FINISH_STOP
                res = GenResult(key=r.key, text=c.text, finish_reason=reason,
                                input_tokens=len(o.prompt_token_ids), output_tokens=len(c.token_ids), model=self.name)
                results.append(res)
                if on_result:
                    on_result(res)
            if progress:
                progress(len(reqs))
        return results

    def close(self) -> None:
        self.llm = None
        if self._tmp is not None:
            self._tmp.cleanup()
