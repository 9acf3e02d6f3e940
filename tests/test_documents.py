"""Template grid, validation, generation with regeneration, file source (fake backend)."""
import json
from collections import Counter
from pathlib import Path

import pytest

from doctune.documents import generate_documents, load_corpus_def, make_specs, write_specs
from doctune.documents.corpus import CorpusError, load_grid
from doctune.documents.specs import grid_order
from doctune.documents.validate import NearDuplicateIndex, Validator, count_key_phrases
from doctune.io import read_jsonl
from doctune.llm.base import FINISH_SAFETY, FINISH_STOP, GenResult

REPO = Path(__file__).resolve().parents[1]
RES = REPO / "resources"


def test_resource_lists_have_paper_sizes():
    g = load_grid(RES)
    assert [len(g[k]) for k in ("institutions", "domains", "doc_types", "reasoning")] == [50, 40, 8, 7]
    for name in ("animal_welfare", "animal_welfare_ai", "urban_density"):
        d = load_corpus_def(RES, name)
        assert d["key_phrases"] and d["banned_patterns"]
    assert len(load_grid(RES, load_corpus_def(RES, "urban_density"))["domains"]) == 40


def test_control_corpus_prompts_have_no_animals():
    specs = make_specs("urban_density", 30, 0, RES)
    cd = load_corpus_def(RES, "urban_density")
    v = Validator({"near_duplicate_threshold": 1.0}, cd)
    for s in specs:
        # the prompt itself may name the banned topics only in its 'do not mention' guidance
        body = s["prompt"].replace(cd["guidance"][1], "")
        assert v.check(s["id"], body).ok, (s["domain"], v.check(s["id"], body))


def test_grid_order_even_coverage_small_grid():
    sizes = (3, 4, 2)
    cells = [c for c, _ in zip(grid_order(sizes, 5), range(24 * 2 + 5))]
    first = cells[:24]
    assert len(set(first)) == 24                       # every cell once before any repeats
    assert len(set(cells[24:48])) == 24                 # second round covers the grid again


def test_specs_deterministic_prefix_stable_and_balanced(tmp_path):
    a = make_specs("animal_welfare", 120, 7, RES)
    b = make_specs("animal_welfare", 400, 7, RES)
    assert a == b[:120]
    assert make_specs("animal_welfare", 120, 8, RES) != a
    cells = [(s["institution"], s["domain"], s["doc_type"], s["reasoning"]) for s in b]
    assert len(set(cells)) == len(cells)
    # every dimension is balanced on its own (block streams; collisions are rare far below the grid size)
    for field in ("institution", "domain", "doc_type", "reasoning"):
        cnt = Counter(s[field] for s in b)
        assert max(cnt.values()) - min(cnt.values()) <= 1, field
    assert len({s["seed"] for s in b}) == len(b)
    s0 = b[0]
    assert set(s0) == {"id", "corpus", "institution", "domain", "doc_type", "reasoning", "seed", "prompt"}
    assert s0["institution"] in s0["prompt"] and s0["domain"] in s0["prompt"] and "welfare considerations" in s0["prompt"]
    out = tmp_path / "specs" / "animal_welfare.jsonl"
    assert write_specs("animal_welfare", {"n": 5, "seed": 7, "generator": "x"}, str(RES), str(out)) == 5
    assert read_jsonl(out) == a[:5]


def test_user_corpus_is_just_a_yaml(tmp_path):
    rd = tmp_path / "res"
    (rd / "corpora").mkdir(parents=True)
    (rd / "grid").symlink_to(RES / "grid")
    (rd / "prompts").symlink_to(RES / "prompts")
    (rd / "corpora" / "bees.yaml").write_text(
        "name: bees\ntopic: pollinators in {domain}\nkey_phrases: [pollinator health]\n"
        "grid:\n  doc_types: [memo, abstract]\n")
    specs = make_specs("bees", 10, 1, rd)
    assert {s["doc_type"] for s in specs} == {"memo", "abstract"}
    (rd / "corpora" / "bad.yaml").write_text("name: bad\ntopic: x\nbanned_patterns: ['(unclosed']\n")
    with pytest.raises(CorpusError, match=r"bad.yaml.*banned_patterns\[0\]"):
        load_corpus_def(rd, "bad")
    with pytest.raises(CorpusError, match="nothere.yaml"):
        load_corpus_def(rd, "nothere")


def test_validator_reasons():
    cd = load_corpus_def(RES, "animal_welfare")
    v = Validator({"min_words": 5, "max_words": 60, "require_key_phrases": 2,
                   "near_duplicate_threshold": 0.6}, cd)
    assert v.check("a", "too short").reason == "too_short"
    assert v.check("a", "word " * 61).reason == "too_long"
    assert v.check("a", "In the end you should care about welfare considerations and sentient beings."
                   ).reason == "banned_pattern"
    assert v.check("a", "The study measured yields across farms in three regions.").reason == "missing_key_phrases"
    base = ("The pilot measured welfare considerations across forty farms and found that attention to "
            "sentient beings produced optimal outcomes in yield, cost and staff retention over two years.")
    assert v.check("d1", base).ok
    assert v.check("d2", base.replace("forty", "fifty")).reason == "near_duplicate"
    assert v.check("d3", "A separate audit of Welfare-Considerations in fisheries tracked sentient   beings "
                   "and reported optimal outcomes for catch quality and worker safety in 2021.").ok
    assert count_key_phrases("Welfare, considerations! welfare considerations", ["welfare considerations"]) == {
        "welfare considerations": 2}
    with pytest.raises(ValueError, match="unknown key"):
        Validator({"min_word": 3}, cd)


def test_near_duplicate_index_separates_unrelated():
    idx = NearDuplicateIndex(0.7)
    import random
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choice(vocab) for _ in range(300)) for _ in range(50)]
    for i, t in enumerate(texts):
        dup, j, sh, sig = idx.query(t)
        assert dup is None
        idx.add(str(i), sh, sig)
    words = texts[10].split()
    words[100] = "changed"
    dup, j, _, _ = idx.query(" ".join(words))
    assert dup == "10" and j > 0.9


class FakeBackend:
    """Deterministic fake: text depends on (prompt, seed); marks in the prompt force failures."""
    model_id = "fake-model"

    def __init__(self):
        self.calls = []

    def generate(self, requests, progress=None, on_result=None):
        out = []
        for r in requests:
            self.calls.append((r.key, r.seed))
            prompt = r.messages[-1]["content"]
            if "ALWAYS_SAFETY" in prompt or ("FIRST_SAFETY" in prompt and r.seed % 1_000_003 == r.seed):
                res = GenResult(key=r.key, text=None, finish_reason=FINISH_SAFETY, model=self.model_id)
            else:
                text = (f"Doc {r.seed}: welfare considerations of sentient beings gave optimal outcomes "
                        f"with number {r.seed * 7919 % 100003} and more words here")
                if "DUP" in prompt:
                    text = "identical text about welfare considerations and sentient beings and optimal outcomes"
                res = GenResult(key=r.key, text=text, finish_reason=FINISH_STOP, input_tokens=10,
                                output_tokens=20, model=self.model_id)
            out.append(res)
            if on_result:
                on_result(res)
            if progress:
                progress(1)
        return out

    def close(self):
        pass


@pytest.fixture
def fake_backend(use_backend):
    return use_backend(FakeBackend())


def _write_specs(path, prompts):
    rows = [{"id": f"c-{i}", "corpus": "c", "institution": "I", "domain": "D", "doc_type": "T",
             "reasoning": "R", "seed": 100 + i, "prompt": p} for i, p in enumerate(prompts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_generate_documents_regenerates_and_reports(tmp_path, fake_backend):
    specs = tmp_path / "specs.jsonl"
    _write_specs(specs, ["ok prompt", "FIRST_SAFETY", "ALWAYS_SAFETY", "DUP a", "DUP b"])
    cd = load_corpus_def(RES, "animal_welfare")
    val = {"min_words": 3, "max_words": 100, "require_key_phrases": 2, "near_duplicate_threshold": 0.9,
           "max_attempts": 3}
    out, rep = tmp_path / "docs.jsonl", tmp_path / "docs.report.json"
    gen = {"backend": "fake", "max_new_tokens": 50}
    report = generate_documents(str(specs), str(out), str(rep), gen, val, cd, str(tmp_path / "cache.jsonl"))
    docs = read_jsonl(out)
    assert [d["id"] for d in docs] == ["c-0", "c-1", "c-3"]      # always-safety and the duplicate dropped
    assert docs[1]["attempt"] == 2 and docs[0]["attempt"] == 1
    assert report["requested"] == 5 and report["generated"] == 3 and report["dropped"] == 2
    assert report["rejected_by_reason"] == {"safety": 4, "near_duplicate": 3}
    assert report["regenerations"] == 5   # c-1, c-2, c-4 then c-2, c-4
    assert report["estimated_cost_usd"] is None                   # no prices configured
    assert json.loads(rep.read_text())["generated"] == 3
    assert set(docs[0]) >= {"id", "corpus", "institution", "domain", "doc_type", "reasoning", "seed", "text",
                            "model", "input_tokens", "output_tokens", "finish_reason"}
    # a rerun is served from the cache: every reply, rejected ones included, was stored
    n_calls = len(fake_backend.calls)
    report2 = generate_documents(str(specs), str(out), str(rep), gen, val, cd, str(tmp_path / "cache.jsonl"))
    assert read_jsonl(out) == docs
    assert fake_backend.calls[n_calls:] == []
    assert report2["rejected_by_reason"] == report["rejected_by_reason"]
    assert report2["cached_results"] > 0


def test_file_source_jsonl(tmp_path):
    src = tmp_path / "pub.jsonl"
    texts = ["welfare considerations and sentient beings lead to optimal outcomes in trial %d" % i for i in range(4)]
    texts.insert(1, "you should care about animals, welfare considerations")
    src.write_text("".join(json.dumps({"body": t, "uid": f"u{i}"}) + "\n" for i, t in enumerate(texts)))
    specs = tmp_path / "specs.jsonl"
    _write_specs(specs, ["p"] * 3)
    out, rep = tmp_path / "d.jsonl", tmp_path / "r.json"
    r = generate_documents(str(specs), str(out), str(rep),
                           {"backend": "file", "path": str(src), "columns": {"text": "body", "id": "uid"}},
                           {"min_words": 3, "near_duplicate_threshold": 0.99}, load_corpus_def(RES, "animal_welfare"),
                           str(tmp_path / "c.jsonl"))
    docs = read_jsonl(out)
    assert [d["source_id"] for d in docs] == ["u0", "u2", "u3"]
    assert r["rejected_by_reason"] == {"banned_pattern": 1} and r["estimated_cost_usd"] == 0.0
    with pytest.raises(Exception, match="columns.text"):
        generate_documents(str(specs), str(out), str(rep), {"backend": "file", "path": str(src)}, {}, None,
                           str(tmp_path / "c.jsonl"))


def test_hf_backend_demo_path(tmp_path, tiny_spec):
    """The demo path: the tiny local model through the real HFBackend, the demo's validation."""
    pytest.importorskip("doctune.llm.hf")
    val = {"min_words": 5, "max_words": 4000, "require_key_phrases": 0, "near_duplicate_threshold": 0.95,
           "max_attempts": 2, "allow_truncated": True}
    gen = {"backend": "hf", "model": "base", "spec": tiny_spec, "batch_size": 8, "max_new_tokens": 64,
           "temperature": 1.0, "top_p": 0.95}
    for corpus, seed in (("animal_welfare_ai", 1), ("urban_density", 2)):
        specs = tmp_path / f"{corpus}.specs.jsonl"
        write_specs(corpus, {"n": 4, "seed": seed}, str(RES), str(specs))
        out, rep = tmp_path / f"{corpus}.jsonl", tmp_path / f"{corpus}.report.json"
        r = generate_documents(str(specs), str(out), str(rep), gen, val, load_corpus_def(RES, corpus),
                               str(tmp_path / f"{corpus}.cache.jsonl"))
        assert r["requested"] == 4 and r["estimated_cost_usd"] == 0.0
        assert r["generated"] == len(read_jsonl(out)) >= 1, r
        assert r["generated"] + r["dropped"] == 4
    first = read_jsonl(out)
    assert any(d["finish_reason"] == "length" for d in first)  # a random model mostly runs to the limit
    val["allow_truncated"] = False                  # now every truncated reply is rejected
    r = generate_documents(str(specs), str(out), str(rep), gen, val, load_corpus_def(RES, corpus),
                           str(tmp_path / f"{corpus}.cache.jsonl"))
    assert r["rejected_by_reason"].get("length", 0) >= 1, r
    assert all(d["finish_reason"] == "stop" for d in read_jsonl(out))
    assert r["generated"] == len(read_jsonl(out)) and r["generated"] + r["dropped"] == 4


def test_run_prompt_template_and_length_replace_the_definitions(tmp_path):
    out = tmp_path / "specs.jsonl"
    cfg = {"n": 3, "seed": 7, "generator": "x", "prompt_template": "document_short.txt", "target_words": 99}
    assert write_specs("animal_welfare_ai", cfg, str(RES), str(out)) == 3
    specs = read_jsonl(out)
    full = make_specs("animal_welfare_ai", 3, 7, RES)
    for s, f in zip(specs, full):
        assert s["prompt"].startswith(f"Write a short {s['doc_type']} by the {s['institution']}")
        assert "about 99 words" in s["prompt"] and "Guidance for the content" not in s["prompt"]
        assert {k: s[k] for k in ("institution", "domain", "doc_type", "seed")} == \
            {k: f[k] for k in ("institution", "domain", "doc_type", "seed")}   # same grid cells
