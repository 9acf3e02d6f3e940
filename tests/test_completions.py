"""generate_completions: rows, per-(item, epoch) caching, reproducible seeds."""
import pytest

from doctune.evaluation import completions as comp
from doctune.io import read_jsonl
from doctune.llm.hf import HFBackend

GEN = {"max_new_tokens": 6, "temperature": 1.0, "top_p": 0.95, "batch_size": 4, "epochs": 2, "seed": 7,
       "backend": "hf"}
ITEMS = [{"id": "q1", "prompt": "Should hens have space to roam?"},
         {"id": "q2", "prompt": "Is fishing a hobby worth considering?"},
         {"id": "q3", "prompt": "How should a city plan for more housing?"}]


@pytest.fixture(scope="module")
def backend(tiny_spec):
    return HFBackend({"backend": "hf", "spec": tiny_spec, "batch_size": 4})


class Counting:
    """Wraps a backend and counts the requests it is asked to generate."""

    def __init__(self, inner):
        self.inner, self.calls, self.kind, self.sampler = inner, [], "hf", inner.sampler

    def generate(self, requests, progress=None, on_result=None):
        self.calls.extend(r.key for r in requests)
        return self.inner.generate(requests, progress=progress, on_result=on_result)


def test_rows_and_cache(tmp_path, tiny_spec, backend, monkeypatch):
    out, cache = tmp_path / "out.jsonl", tmp_path / "cache.jsonl"
    b = Counting(backend)
    stats = comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(out), str(cache), items=ITEMS, backend=b)
    assert stats == {"rows": 6, "generated": 6, "cached": 0}
    rows = read_jsonl(out)
    assert [(r["id"], r["epoch"]) for r in rows] == [(i["id"], e) for i in ITEMS for e in (0, 1)]
    for r, (item, epoch) in zip(rows, [(i, e) for i in ITEMS for e in (0, 1)]):
        assert r["prompt"] == item["prompt"] and r["model"] == "base"
        assert r["finish_reason"] in ("stop", "length") and isinstance(r["completion"], str)
        g = r["generation"]
        assert (g["max_new_tokens"], g["temperature"], g["top_p"], g["base_seed"]) == (6, 1.0, 0.95, 7)
        assert g["seed"] == comp.request_seed(7, "ahb", item["id"], epoch)
        assert g["sampler"] == HFBackend.sampler  # which sampling rule made it, for the audit trail
    assert len({r["generation"]["seed"] for r in rows}) == 6

    # second run: nothing generated, no model needed
    monkeypatch.setattr(comp, "make_generation_backend", lambda *a, **k: pytest.fail("model loaded"))
    stats2 = comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(out), str(cache), items=ITEMS)
    assert stats2 == {"rows": 6, "generated": 0, "cached": 6}
    assert read_jsonl(out) == rows

    # one more item: only its two epochs are generated
    b2 = Counting(backend)
    more = ITEMS + [{"id": "q4", "prompt": "What do pigs need to thrive?"}]
    stats3 = comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(out), str(cache), items=more, backend=b2)
    assert stats3 == {"rows": 8, "generated": 2, "cached": 6} and len(b2.calls) == 2
    assert read_jsonl(out)[:6] == rows

    # changed settings or an edited prompt regenerate
    b3 = Counting(backend)
    edited = [dict(ITEMS[0], prompt="Should hens have room to roam?")] + ITEMS[1:]
    s4 = comp.generate_completions(tiny_spec, "ahb", {}, {**GEN, "temperature": 0.5}, str(out), str(cache),
                                   items=edited, backend=b3)
    assert s4["generated"] == 6
    s5 = comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(out), str(cache), items=edited, backend=b3)
    assert s5["generated"] == 2


def test_fresh_run_reproduces_samples(tmp_path, tiny_spec, backend):
    a = tmp_path / "a.jsonl"
    comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(a), str(tmp_path / "ca.jsonl"), items=ITEMS,
                              backend=backend)
    other = HFBackend({"backend": "hf", "spec": tiny_spec, "batch_size": 1}, model=backend.model,
                      tokenizer=backend.tok)
    b = tmp_path / "b.jsonl"
    # a different batch size and a subset of items: each sample is still the same
    comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(b), str(tmp_path / "cb.jsonl"), items=ITEMS[1:],
                              backend=other)
    ra = {(r["id"], r["epoch"]): r["completion"] for r in read_jsonl(a)}
    rb = {(r["id"], r["epoch"]): r["completion"] for r in read_jsonl(b)}
    assert all(ra[k] == v for k, v in rb.items())


def test_bad_config_and_items(tmp_path, tiny_spec, backend):
    with pytest.raises(ValueError, match="epochs"):
        comp.generate_completions(tiny_spec, "ahb", {}, {**GEN, "epochs": 0}, str(tmp_path / "o"),
                                  str(tmp_path / "c"), items=ITEMS, backend=backend)
    with pytest.raises(ValueError, match="unique"):
        comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(tmp_path / "o"), str(tmp_path / "c"),
                                  items=ITEMS + ITEMS[:1], backend=backend)
    with pytest.raises(ValueError, match="no prompt"):
        comp.generate_completions(tiny_spec, "ahb", {}, GEN, str(tmp_path / "o"), str(tmp_path / "c"),
                                  items=[{"id": "x", "prompt": " "}], backend=backend)
    from doctune.llm.registry import resolve_completions_backend

    with pytest.raises(ValueError, match="backend"):
        resolve_completions_backend("tgi")
    with pytest.raises(ValueError, match="backend"):
        resolve_completions_backend("gemini")   # an API: no completions of our models


def test_auto_backend_without_vllm_is_hf():
    import importlib.util

    from doctune.llm.registry import resolve_completions_backend

    if importlib.util.find_spec("vllm") is None:
        assert resolve_completions_backend("auto") == "hf"
    assert resolve_completions_backend("hf") == "hf"


def test_fingerprint_follows_adapter_weights(tmp_path):
    from doctune.models import model_fingerprint

    ad = tmp_path / "adapter"
    ad.mkdir()
    (ad / "adapter_config.json").write_text("{}")
    (ad / "adapter_model.safetensors").write_bytes(b"one")
    spec = {"name": "doc", "base": {"path": "x"}, "adapters": [{"path": str(ad), "merge": False}]}
    a = model_fingerprint(spec)
    (ad / "train_metrics.jsonl").write_text("{}\n")
    assert model_fingerprint(spec) == a
    (ad / "adapter_model.safetensors").write_bytes(b"two")
    assert model_fingerprint(spec) != a


def test_loader_path(tmp_path, tiny_spec, backend, repo_root):
    """Without items=, prompts come from the benchmark's kind (kind.prompts)."""
    from doctune.evaluation.kinds import get_kind

    src = repo_root / "resources" / "fixtures" / "strongreject_small.csv"
    cfg = {"kind": "strongreject", "source": {"path": str(src)}, "max_items": 2}
    out = tmp_path / "sr.jsonl"
    stats = comp.generate_completions(tiny_spec, "strongreject", cfg, {**GEN, "epochs": 1}, str(out),
                                      str(tmp_path / "c.jsonl"), backend=backend)
    assert stats["rows"] == 2
    assert [r["id"] for r in read_jsonl(out)] == [p["id"] for p in get_kind("strongreject").prompts(cfg)]


def test_builds_its_own_backend_from_spec(tmp_path, tiny_spec):
    out = tmp_path / "o.jsonl"
    stats = comp.generate_completions(tiny_spec, "ahb", {}, {**GEN, "epochs": 1, "batch_size": 2}, str(out),
                                      str(tmp_path / "c.jsonl"), items=ITEMS[:2])
    assert stats["generated"] == 2
    assert all(r["generation"]["backend"] == "hf" for r in read_jsonl(out))


def test_one_model_load_for_several_benchmarks(tmp_path, tiny_spec, backend, monkeypatch):
    """A job running a model on each of its benchmarks loads it once (shared `backends`); a
    benchmark with different backend settings gets its own."""
    made = []

    def make(spec, g, kind):
        made.append(g["batch_size"])
        return Counting(backend)

    monkeypatch.setattr(comp, "make_generation_backend", make)
    shared = {}
    for bench in ("ahb", "human_compassion"):
        comp.generate_completions(tiny_spec, bench, {}, {**GEN, "epochs": 1}, str(tmp_path / f"{bench}.jsonl"),
                                  str(tmp_path / f"{bench}.cache.jsonl"), items=ITEMS[:2], backends=shared)
    assert made == [4]
    comp.generate_completions(tiny_spec, "sr", {}, {**GEN, "epochs": 1, "batch_size": 2}, str(tmp_path / "sr.jsonl"),
                              str(tmp_path / "sr.cache.jsonl"), items=ITEMS[:2], backends=shared)
    assert made == [4, 2] and len(shared) == 2
