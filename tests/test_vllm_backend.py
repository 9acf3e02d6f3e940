"""VLLMBackend's glue, run against a stand-in `vllm` package (vLLM itself cannot be installed on the
CPU test machines). The stand-in records what the backend asks of vLLM, so these tests check the
mapping of model specs (base, live adapter, merged chain), prompts, seeds and results, and the
chunking that lets completions be cached call by call. They say nothing of vLLM's own output."""
import json
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from doctune.llm.base import GenRequest  # noqa: E402
from doctune.llm.hf import HFBackend  # noqa: E402

FAKE = {
    "vllm/__init__.py": """
        CALLS = []

        class SamplingParams:
            def __init__(self, **kw):
                self.__dict__.update(kw)

        class _Completion:
            def __init__(self, text, token_ids, finish_reason):
                self.text, self.token_ids, self.finish_reason = text, token_ids, finish_reason

        class _Output:
            def __init__(self, prompt_token_ids, completion):
                self.prompt_token_ids, self.outputs = prompt_token_ids, [completion]

        class LLM:
            def __init__(self, **kw):
                self.kw = kw
                CALLS.append(("init", kw))

            def generate(self, prompts, params, lora_request=None, use_tqdm=True):
                CALLS.append(("generate", len(prompts), lora_request))
                outs = []
                for p, sp in zip(prompts, params):
                    ids = p["prompt_token_ids"]
                    n = min(sp.max_tokens, 3)
                    reason = "length" if n == sp.max_tokens else "stop"
                    outs.append(_Output(ids, _Completion(f"seed={sp.seed} n={len(ids)} T={sp.temperature}",
                                                         list(range(n)), reason)))
                return outs
    """,
    "vllm/inputs.py": """
        def TokensPrompt(prompt_token_ids):
            return {"prompt_token_ids": list(prompt_token_ids)}
    """,
    "vllm/lora/__init__.py": "",
    "vllm/lora/request.py": """
        class LoRARequest:
            def __init__(self, lora_name, lora_int_id, lora_path):
                self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path
    """,
}


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    root = tmp_path / "fake_vllm"
    for rel, text in FAKE.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        monkeypatch.delitem(sys.modules, name)
    import vllm

    vllm.CALLS.clear()
    yield vllm
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def adapters(tiny_spec, tmp_path_factory):
    """Two LoRA adapters on the tiny model, saved as peft writes them."""
    from peft import LoraConfig, get_peft_model

    from doctune.models import load_model

    out = tmp_path_factory.mktemp("adapters")
    paths = []
    for k, r in enumerate((4, 16)):
        model, _ = load_model(tiny_spec, device="cpu")
        torch.manual_seed(k)
        peft = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"],
                                                init_lora_weights=False))
        peft.save_pretrained(str(out / f"a{k}"), safe_serialization=True)
        paths.append(str(out / f"a{k}"))
    return paths


def _reqs(n, mnt=5, temperature=1.0):
    return [GenRequest(key=f"r{i}", messages=[{"role": "user", "content": "hens " * (1 + i)}], max_new_tokens=mnt,
                       temperature=temperature, top_p=1.0, seed=50 + i) for i in range(n)]


def test_base_model_prompts_seeds_and_results(fake_vllm, tiny_spec):
    from doctune.llm.vllm_backend import VLLMBackend

    b = VLLMBackend({"spec": tiny_spec, "seed": 3, "vllm_chunk": 4})
    init = fake_vllm.CALLS[0][1]
    assert init["model"] == tiny_spec["base"]["path"] and not init.get("enable_lora")
    assert init["trust_remote_code"] is False and init["seed"] == 3
    reqs = _reqs(10, mnt=2) + _reqs(1, mnt=9)
    seen, done = [], []
    res = b.generate(reqs, progress=done.append, on_result=lambda r: seen.append(r.key))
    assert [c[1] for c in fake_vllm.CALLS if c[0] == "generate"] == [4, 4, 3]  # chunks of at most 4, even
    assert sum(done) == 11 and seen == [r.key for r in reqs] and [r.key for r in res] == seen
    hf = HFBackend({"backend": "hf", "spec": tiny_spec})
    for req, r in zip(reqs, res):
        assert r.input_tokens == len(hf.prompt_ids(req))  # the same chat-templated token ids as hf
        assert r.text == f"seed={req.seed} n={r.input_tokens} T=1.0"
        assert r.finish_reason == ("length" if req.max_new_tokens <= 3 else "stop")
        assert r.output_tokens == min(req.max_new_tokens, 3)
    b.close()


def test_live_adapter_is_served_unmerged(fake_vllm, tiny_spec, adapters):
    from doctune.llm.vllm_backend import VLLMBackend

    spec = {**tiny_spec, "name": "arm", "adapters": [{"path": adapters[1], "merge": False}]}
    b = VLLMBackend({"spec": spec})
    init = fake_vllm.CALLS[0][1]
    assert init["model"] == tiny_spec["base"]["path"]
    assert init["enable_lora"] is True and init["max_lora_rank"] >= 16
    b.generate(_reqs(2))
    lora = fake_vllm.CALLS[-1][2]
    assert lora.lora_path == adapters[1] and lora.lora_int_id == 1


def test_merged_chain_is_written_once_and_last_adapter_stays_live(fake_vllm, tiny_spec, adapters):
    from safetensors.torch import load_file

    from doctune.llm.vllm_backend import VLLMBackend
    from doctune.models import load_model

    spec = {**tiny_spec, "name": "arm.post8",
            "adapters": [{"path": adapters[0], "merge": True}, {"path": adapters[1], "merge": False}]}
    b = VLLMBackend({"spec": spec})
    model_dir = Path(fake_vllm.CALLS[0][1]["model"])
    assert model_dir != Path(tiny_spec["base"]["path"]) and model_dir.is_dir()
    weights = {}
    for f in model_dir.glob("*.safetensors"):
        weights.update(load_file(str(f)))
    merged, _ = load_model({**spec, "adapters": spec["adapters"][:1]}, device="cpu", merge_all=True)
    expect = merged.state_dict()
    base, _ = load_model(tiny_spec, device="cpu")
    changed = 0
    for k, v in weights.items():
        torch.testing.assert_close(v, expect[k])
        changed += int(not torch.equal(v, base.state_dict()[k]))
    assert changed > 0  # the first adapter really is in the weights vLLM loads
    assert (model_dir / "tokenizer_config.json").exists()
    assert fake_vllm.CALLS[0][1]["enable_lora"] is True
    b.generate(_reqs(1))
    assert fake_vllm.CALLS[-1][2].lora_path == adapters[1]
    b.close()
    assert not model_dir.exists()  # the merged copy is temporary


def test_generation_config_picks_vllm_backend(fake_vllm, tiny_spec):
    from doctune.evaluation.completions import make_generation_backend

    b = make_generation_backend(tiny_spec, {"batch_size": "auto", "seed": 7}, "vllm")
    assert type(b).__name__ == "VLLMBackend" and fake_vllm.CALLS[0][1]["seed"] == 7
    assert json.dumps(b.generate(_reqs(1, temperature=0.0))[0].text).count("T=0.0") == 1
