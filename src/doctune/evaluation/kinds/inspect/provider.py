"""Our models served to Inspect (inspect-ai 0.3.285) as the model provider ``doctune``.

``get_model("doctune/<name>", spec=<model spec dict or path to model.json>)`` loads the model the
way every other stage does (``doctune.models.load_model``: safetensors only, trust_remote_code
off unless the spec turns it on, the base model's own chat template or the spec's override), with
a post-trained model's LoRA adapter kept as a live peft adapter (not merged; adapters the spec
flags ``merge: true`` are merged, as everywhere else). Generation, tool rendering and tool-call
parsing are Inspect's own ``hf`` provider code (``HuggingFaceAPI.generate``), which this class
inherits: only loading differs, because Inspect's ``hf`` provider loads one ``from_pretrained``
folder and cannot stack a base model with our adapter spec.

Tools reach the model only through its chat template (``apply_chat_template(..., tools=...)``):
a template that ignores ``tools`` (the demo's tiny model, SmolLM2's ChatML template) gives the
model no tool definitions, so such a model cannot call tools. ``template_renders_tools`` tells.
"""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

PROVIDER = "doctune"


def _register() -> None:
    from inspect_ai.model import GenerateConfig, modelapi
    from inspect_ai.model._model import ModelAPI
    from inspect_ai.model._providers.hf import HuggingFaceAPI, set_random_seeds

    class DoctuneModelAPI(HuggingFaceAPI):
        def __init__(self, model_name: str, base_url: str | None = None, api_key: str | None = None,
                     config: GenerateConfig = GenerateConfig(), **model_args: Any):
            from ....io import read_json
            from ....models import default_device, load_model

            ModelAPI.__init__(self, model_name=model_name, base_url=base_url, api_key=api_key,
                              api_key_vars=[], config=config)
            if config.seed is not None:
                set_random_seeds(config.seed)
            spec = model_args.pop("spec", None)
            if spec is None:
                raise ValueError(f"model doctune/{model_name}: pass spec=<model spec or path to model.json>")
            if not isinstance(spec, dict):
                spec = read_json(spec)
            self.spec = spec
            self.device = model_args.pop("device", None) or default_device()
            dtype = model_args.pop("dtype", None)
            # the attributes HuggingFaceAPI.generate reads (same defaults as its __init__)
            self.batch_size = model_args.pop("batch_size", None)
            self.chat_template = model_args.pop("chat_template", None)
            self.use_chat_template = model_args.pop("use_chat_template", None)
            # the chat template already holds any BOS token (as in doctune.llm.hf)
            self.tokenizer_call_args = model_args.pop("tokenizer_call_args", None) or {"add_special_tokens": False}
            self.enable_thinking = model_args.pop("enable_thinking", None)
            self.hidden_states = model_args.pop("hidden_states", None)
            do_sample = model_args.pop("do_sample", None)
            self.do_sample = True if do_sample is None else bool(do_sample)
            if model_args:
                raise ValueError(f"model doctune/{model_name}: unknown model args {sorted(model_args)}")
            self.model, self.tokenizer = load_model(spec, device=self.device, dtype=dtype)
            self.tokenizer.padding_side = "left"
            n_live = sum(1 for a in spec.get("adapters") or [] if not a.get("merge", True))
            log.info("doctune/%s: %s with %d adapter(s), %d live (unmerged)", model_name, spec["base"].get("path"),
                     len(spec.get("adapters") or []), n_live)

        def model_family(self) -> str:  # tool-call parsing follows the base model's family
            return str(self.spec["base"].get("path") or self.model_name)

    modelapi(name=PROVIDER)(lambda: DoctuneModelAPI)


_registered = False


def register() -> None:
    """Register the ``doctune`` provider with Inspect (idempotent)."""
    global _registered
    if not _registered:
        _register()
        _registered = True


def get_inspect_model(name: str, spec: dict, **model_args: Any):
    """An Inspect ``Model`` serving one of our models (base, arm, or base + adapter)."""
    register()
    from inspect_ai.model import get_model

    return get_model(f"{PROVIDER}/{name}", spec=spec, memoize=False, **model_args)


def template_renders_tools(tokenizer) -> bool:
    """Whether a tokenizer's chat template shows tool definitions to the model."""
    msgs = [{"role": "user", "content": "hi"}]
    tool = {"type": "function", "function": {"name": "zz_probe_tool", "description": "probe",
                                              "parameters": {"type": "object", "properties": {}}}}
    try:
        with_tools = tokenizer.apply_chat_template(msgs, tools=[tool], tokenize=False, add_generation_prompt=True)
    except Exception:  # a template that rejects tools cannot use them
        return False
    return "zz_probe_tool" in with_tools
