"""HFBackend: batched generation (order, seeds, stop/length) and exact option log-probabilities."""
import math

import pytest

torch = pytest.importorskip("torch")

from doctune.llm.base import GenRequest  # noqa: E402
from doctune.llm.hf import HFBackend, SeededSampler  # noqa: E402


@pytest.fixture(scope="module")
def backend(tiny_spec):
    return HFBackend({"backend": "hf", "spec": tiny_spec, "batch_size": 3})


def _reqs(n, temperature=1.0, top_p=0.9, mnt=10):
    return [GenRequest(key=f"r{i}", messages=[{"role": "user", "content": "tell me about hens " * (1 + i % 4)}],
                       max_new_tokens=mnt, temperature=temperature, top_p=top_p, seed=100 + i) for i in range(n)]


def _other(backend, batch_size):
    return HFBackend({"backend": "hf", "spec": backend.spec, "batch_size": batch_size},
                     model=backend.model, tokenizer=backend.tok)


def test_results_in_request_order_with_counts(backend):
    reqs = _reqs(7)
    seen = []
    res = backend.generate(reqs, on_result=lambda r: seen.append(r.key))
    assert [r.key for r in res] == [r.key for r in reqs]
    assert sorted(seen) == sorted(r.key for r in reqs)
    for req, r in zip(reqs, res):
        assert r.input_tokens == len(backend.prompt_ids(req))
        assert 1 <= r.output_tokens <= req.max_new_tokens
        assert r.finish_reason in ("stop", "length")
        assert r.model == "base"


def test_sampling_depends_only_on_request_seed(backend):
    reqs = _reqs(7)
    a = [r.text for r in backend.generate(reqs)]
    b = [r.text for r in _other(backend, 1).generate(list(reversed(reqs)))][::-1]
    c = [r.text for r in _other(backend, 7).generate(reqs)]
    assert a == b == c
    # another seed gives another sample (for at least one of seven 10-token samples)
    reseeded = [GenRequest(**{**r.settings(), "key": r.key, "seed": r.seed + 1}) for r in reqs]
    assert [r.text for r in backend.generate(reseeded)] != a


def test_greedy_batched_matches_single(backend):
    reqs = _reqs(5, temperature=0.0)
    batched = [r.text for r in _other(backend, 5).generate(reqs)]
    single = [_other(backend, 1).generate([r])[0].text for r in reqs]
    assert batched == single


def test_mixed_settings_are_grouped(backend):
    reqs = _reqs(4, mnt=3) + _reqs(3, temperature=0.0, mnt=6)
    for i, r in enumerate(reqs):
        r.key = f"k{i}"
    res = backend.generate(reqs)
    assert [r.key for r in res] == [r.key for r in reqs]
    assert all(r.output_tokens <= 3 for r in res[:4]) and all(r.output_tokens <= 6 for r in res[4:])


def test_stop_on_eos_and_length(tiny_spec, backend):
    req = _reqs(1, temperature=0.0, mnt=5)[0]
    first = backend.generate([req])[0]
    assert first.finish_reason == "length" and first.output_tokens == 5
    # make the greedy first token an end-of-sequence id: generation stops at once
    ids = backend.prompt_ids(req)
    with torch.no_grad():
        nxt = int(backend.model(torch.tensor([ids])).logits[0, -1].argmax())
    b = _other(backend, 2)
    b.eos_ids = [nxt]
    r = b.generate([req])[0]
    assert r.finish_reason == "stop" and r.text == "" and r.output_tokens == 1


def test_ignore_eos_runs_to_length(backend):
    b = HFBackend({"backend": "hf", "spec": backend.spec, "batch_size": 4, "ignore_eos": True},
                  model=backend.model, tokenizer=backend.tok)
    res = b.generate(_reqs(4, mnt=7))
    assert all(r.output_tokens == 7 and r.finish_reason == "length" for r in res)


def test_seeded_sampler_matches_softmax_and_top_p():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    n = 6000
    scores = logits.repeat(n, 1)
    s = SeededSampler(list(range(n)), prompt_len=3, temperature=1.0, top_p=1.0)
    out = s(torch.zeros((n, 3), dtype=torch.long), scores.clone())
    picks = out.argmax(-1)
    assert torch.all(torch.isfinite(out).sum(-1) == 1)
    freq = torch.bincount(picks, minlength=4).float() / n
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.03)
    # top_p = 0.7 keeps the smallest prefix reaching 0.7: tokens 0 and 1, renormalised 5/8, 3/8
    s2 = SeededSampler(list(range(n)), prompt_len=3, temperature=1.0, top_p=0.7)
    picks2 = s2(torch.zeros((n, 3), dtype=torch.long), scores.clone()).argmax(-1)
    freq2 = torch.bincount(picks2, minlength=4).float() / n
    assert freq2[2] == 0 and freq2[3] == 0
    assert abs(float(freq2[0]) - 0.625) < 0.03
    # exact ties break by token id whatever the batch: four equal logits, top_p 0.5 keeps ids 0 and 1
    ties = SeededSampler(list(range(n)), prompt_len=3, temperature=1.0, top_p=0.5)
    picks3 = ties(torch.zeros((n, 3), dtype=torch.long), torch.zeros(n, 4)).argmax(-1)
    assert set(picks3.tolist()) == {0, 1}
    one = SeededSampler([5], prompt_len=3, temperature=1.0, top_p=0.5)
    assert int(one(torch.zeros((1, 3), dtype=torch.long), torch.zeros(1, 4)).argmax()) == int(picks3[5])
    # same seed and step -> same token; the stream moves on with the step
    again = s(torch.zeros((n, 3), dtype=torch.long), scores.clone()).argmax(-1)
    assert torch.equal(again, picks)
    later = s(torch.zeros((n, 4), dtype=torch.long), scores.clone()).argmax(-1)
    assert not torch.equal(later, picks)


def _manual_logprob(backend, prompt_ids, option):
    c = backend.tok(option, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + c])
    with torch.no_grad():
        lp = torch.log_softmax(backend.model(ids).logits[0].float(), -1)
    return sum(float(lp[len(prompt_ids) - 1 + k, t]) for k, t in enumerate(c))


def test_option_logprobs_exact_and_batched(backend):
    reqs = _reqs(4)
    reqs.append(GenRequest(key="raw", messages=[{"role": "user", "content": "Question: is it so?\n\nAnswer:"}],
                           raw_prompt=True))
    options = [["0", "1"], [" (A)", " (B)"], ["(A)", "(B)", "a longer option text"], ["yes"], ["1", "0"]]
    b1 = _other(backend, 1)
    b1.score_batch_size = 1
    one = b1.option_logprobs(reqs, options)
    b7 = _other(backend, 7)
    many = b7.option_logprobs(reqs, options)
    for req, opts, row1, rowk in zip(reqs, options, one, many):
        assert len(row1) == len(opts)
        for o, x, y in zip(opts, row1, rowk):
            assert x < 0 and math.isfinite(x)
            assert abs(x - y) < 1e-4
            assert abs(x - _manual_logprob(backend, backend.prompt_ids(req), o)) < 1e-4


def test_option_logprobs_errors(backend):
    with pytest.raises(ValueError, match="option lists"):
        backend.option_logprobs(_reqs(2), [["a"]])
    with pytest.raises(ValueError, match="tokenises to nothing"):
        backend.option_logprobs(_reqs(1), [[""]])


def test_chat_prompt_uses_template_without_double_bos(backend):
    req = _reqs(1)[0]
    ids = backend.prompt_ids(req)
    bos = backend.tok.bos_token_id
    assert ids[0] == bos and ids.count(bos) == 1
    assert backend.tok.decode(ids).rstrip().endswith("<|assistant|>")


def test_static_cache_matches_dynamic_greedy(backend):
    reqs = _reqs(4, temperature=0.0, mnt=6)
    static = HFBackend({"backend": "hf", "spec": backend.spec, "batch_size": 4, "cache_implementation": "static",
                        "compile": False}, model=backend.model, tokenizer=backend.tok)
    assert [r.text for r in static.generate(reqs)] == [r.text for r in _other(backend, 4).generate(reqs)]


def test_out_of_memory_halves_the_batch(backend, monkeypatch):
    b = _other(backend, 8)
    real = b._generate_batch
    sizes = []

    def flaky(chunk, *a):
        sizes.append(len(chunk))
        if len(chunk) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(chunk, *a)

    monkeypatch.setattr(b, "_generate_batch", flaky)
    reqs = _reqs(7)
    res = b.generate(reqs)
    assert [r.key for r in res] == [r.key for r in reqs]
    assert [r.text for r in res] == [r.text for r in _other(backend, 3).generate(reqs)]
    assert sizes[0] == 7 and max(s for s in sizes[1:] if s <= 2) == 2
    monkeypatch.setattr(b, "_generate_batch", lambda *a: (_ for _ in ()).throw(ValueError("other")))
    with pytest.raises(ValueError, match="other"):
        b.generate(reqs)


# ---------------------------------------------------------------- batch planning

def test_balanced_batches_cut_evenly_in_order():
    from doctune.llm.hf import balanced_batches

    b = balanced_batches(list(range(780)), 256)
    assert [len(x) for x in b] == [195, 195, 195, 195]
    assert sum(b, []) == list(range(780))  # order kept, nothing lost or repeated
    assert [len(x) for x in balanced_batches(list(range(10)), 4)] == [4, 3, 3]
    assert [len(x) for x in balanced_batches(list(range(8)), 8)] == [8]
    assert balanced_batches([], 4) == []
    assert [len(x) for x in balanced_batches(list(range(5)), 1)] == [1] * 5


def test_plan_batch_size_for_llama_8b_shape():
    """Hand-computed for Llama-3.1-8B in bf16, 256-token prompts + 512 new tokens, 60 GiB free:
    KV 2*32*8*128*2 = 131072 B/token x 768 = 100,663,296 B; prefill 256 x (2*(3*14336 + 4*4096)
    + 4*32*256) = 38,797,312 B; sampler 32 x 128256 = 4,104,192 B; per row 143,564,800 B;
    budget 0.9 x 60 GiB - 1.5 GiB = 56,371,445,760 B -> 392 rows."""
    from transformers import LlamaConfig

    from doctune.llm.hf import kv_bytes_per_token, plan_batch_size

    cfg = LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8)
    assert kv_bytes_per_token(cfg, 2) == 131072
    assert plan_batch_size(cfg, 2, 256, 512, 60 * 2**30) == 392
    assert plan_batch_size(cfg, 2, 256, 512, 1 * 2**30) == 1           # never below one row
    assert plan_batch_size(cfg, 2, 8, 8, 10**15) == 1024                 # capped
    assert plan_batch_size(cfg, 2, 256, 1024, 60 * 2**30) < 392          # longer completions, fewer rows


def test_auto_batch_size_on_cpu_and_bad_values(backend):
    from doctune.llm.hf import AUTO_CPU_BATCH

    auto = _other(backend, "auto")
    assert auto.max_batch(100, 100) == AUTO_CPU_BATCH
    reqs = _reqs(5, temperature=0.0, mnt=4)
    assert [r.text for r in auto.generate(reqs)] == [r.text for r in _other(backend, 2).generate(reqs)]
    for bad in (0, -1, "big", 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            _other(backend, bad)


def test_repetition_penalty_applies_and_is_part_of_the_model_id(backend):
    """Greedy decoding with a penalty on repeated tokens: no token of a greedy 24-token answer
    repeats as often as without it (the tiny model loops), and replies are cached apart."""
    reqs = _reqs(3, temperature=0.0, mnt=24)
    pen = HFBackend({"backend": "hf", "spec": backend.spec, "batch_size": 3, "repetition_penalty": 50.0},
                    model=backend.model, tokenizer=backend.tok)
    assert pen.model_id == backend.model_id + ":rp50" and ":rp" not in backend.model_id
    plain = [backend.tok(r.text)["input_ids"] for r in backend.generate(reqs)]
    damped = [backend.tok(r.text)["input_ids"] for r in pen.generate(reqs)]

    def most_repeated(ids):
        return max((ids.count(t) for t in set(ids)), default=0)
    assert damped != plain
    assert sum(map(most_repeated, damped)) < sum(map(most_repeated, plain))
    with pytest.raises(ValueError, match="repetition_penalty"):
        HFBackend({"backend": "hf", "spec": backend.spec, "repetition_penalty": 0},
                  model=backend.model, tokenizer=backend.tok)


def test_gemini_refuses_repetition_penalty():
    from doctune.llm.gemini import GeminiBackend

    with pytest.raises(ValueError, match="repetition_penalty is not a Gemini setting"):
        GeminiBackend({"model": "gemini-2.5-flash-lite", "repetition_penalty": 1.2})
