"""Sweeps (doctune.workflow.sweeps): expansion, names, preflight errors; nested corpora
(doctune.documents.prefix) grown on the loopback Gemini server without paying twice; the DAG of
a sweep (each point an independent training job)."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from doctune.io import read_jsonl
from doctune.workflow.config import config_problems, eval_models, posttrain_arms, validate_config
from doctune.workflow.sweeps import format_value, point_name, sweep_plan

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def tiny(**sweeps) -> dict:
    cfg = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    cfg["corpora"]["animal_welfare_ai"]["n"] = 8
    cfg["sweeps"] = sweeps
    return cfg


def test_expansion_names_order_and_settings():
    cfg = validate_config(tiny(s={"arm": "doc", "vary": {"learning_rate": [0.001, 2e-5], "lora.r": [2, 8]},
                                  "control": "control"},
                               d={"arm": "doc", "vary": {"n_docs": [2, 8]}}), SCHEMA)
    names = list(cfg["arms"])
    # the points follow their arm, in the grid's order (first key slowest), sweeps in config order
    assert names == ["doc", "doc~learning_rate=0.001~lora.r=2", "doc~learning_rate=0.001~lora.r=8",
                     "doc~learning_rate=2e-05~lora.r=2", "doc~learning_rate=2e-05~lora.r=8",
                     "doc~n_docs=2", "doc~n_docs=8", "instruct", "control"]
    p = cfg["arms"]["doc~learning_rate=2e-05~lora.r=8"]
    # only the varied keys change; the arm's own overrides (its token budget) stay
    assert p["training"] == {"learning_rate": 2e-05, "lora": {"r": 8}, "max_tokens": 600}
    assert {k: v for k, v in p.items() if k != "training"} == {k: v for k, v in cfg["arms"]["doc"].items()
                                                               if k != "training"}
    assert cfg["arms"]["doc~n_docs=2"]["n_docs"] == 2 and cfg["arms"]["doc"]["n_docs"] is None
    # evaluated like any arm; a second validation (a job's copy) changes nothing
    assert "doc~n_docs=8" in eval_models(cfg)
    assert validate_config(cfg, SCHEMA) == cfg
    plan = {s["name"]: s for s in sweep_plan(cfg)}
    assert plan["s"]["control"] == "control" and plan["s"]["keys"] == ["learning_rate", "lora.r"]
    assert plan["d"]["control"] == "control"     # the arm's matched control in the manipulation check
    assert plan["d"]["base"] == "base"
    assert [x["values"] for x in plan["d"]["points"]] == [{"n_docs": 2}, {"n_docs": 8}]


def test_posttrain_arms_may_name_a_sweep_and_points_stay_out_of_the_manipulation_pairs():
    from doctune.analysis.manipulation import manipulation_pairs

    raw = tiny(d={"arm": "doc", "vary": {"n_docs": [2, 8]}})
    raw["posttrain"]["arms"] = ["d", "instruct"]
    cfg = validate_config(raw, SCHEMA)
    assert posttrain_arms(cfg) == ["doc~n_docs=2", "doc~n_docs=8", "instruct"]
    assert "doc~n_docs=2.post4" in eval_models(cfg)
    assert [(p["arm"], p["control"]) for p in manipulation_pairs(cfg)] == [("doc", "control")]


def test_value_formats():
    assert [format_value(v) for v in (500, 0.0001, 2e-05, 1.0, True, [1, 2], "cosine")] == \
        ["500", "0.0001", "2e-05", "1.0", "true", "1+2", "cosine"]
    assert point_name("doc", {"n_docs": 500, "seed": 1}) == "doc~n_docs=500~seed=1"


@pytest.mark.parametrize("vary, key, words", [
    ({"n_dox": [1]}, "sweeps.s.vary.n_dox", "did you mean 'n_docs'"),
    ({"n_docs": []}, "sweeps.s.vary.n_docs", "non-empty"),
    ({"n_docs": [2, 0]}, "sweeps.s.vary.n_docs[1]", "minimum of 1"),
    ({"learning_rate": [0.1, -1]}, "sweeps.s.vary.learning_rate[1]", "training.learning_rate"),
    ({"lora.r": [4, "x"]}, "sweeps.s.vary.lora.r[1]", "integer"),
    ({"epochs": [1, 1]}, "sweeps.s.vary.epochs", "repeat"),
    ({"n_docs": [2, 9]}, "sweeps.s.vary.n_docs", "corpora.animal_welfare_ai.n"),
    ({"lr_scheduler": ["cosine", "step"]}, "sweeps.s.vary.lr_scheduler[1]", "is not one of"),
])
def test_preflight_names_the_key(vary, key, words):
    _, problems = config_problems(tiny(s={"arm": "doc", "vary": vary}), SCHEMA)
    assert len(problems) == 1, problems
    assert f"config key '{key}'" in problems[0] and words in problems[0], problems


def test_bad_arm_or_control_names_the_key():
    _, problems = config_problems(tiny(s={"arm": "dock", "vary": {"n_docs": [1]}}), SCHEMA)
    assert problems == [p for p in problems if "config key 'sweeps.s.arm'" in p and "did you mean 'doc'" in p]
    _, problems = config_problems(tiny(s={"arm": "doc", "vary": {"n_docs": [1]}, "control": "ctrl"}), SCHEMA)
    assert any("config key 'sweeps.s.control'" in p for p in problems), problems
    raw = tiny(s={"arm": "doc", "vary": {"n_docs": [1]}})
    raw["arms"]["doc~n_docs=1"] = dict(raw["arms"]["instruct"])      # a hand-written arm in the way
    _, problems = config_problems(raw, SCHEMA)
    assert any("doc~n_docs=1" in p for p in problems), problems


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


def test_dry_run_shows_the_expansion_and_each_point_trains_on_its_own(tmp_path):
    """The tiny config's 2-point sweep in a dry run: the expansion line, and in the job graph each
    point's training job needs only its prefix of the corpus and the base model (no point waits
    for another), the prefixes only the one corpus."""
    args = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--configfile",
            str(REPO / "config/tiny.yaml"), "--config", "run_name=sweepdag", "-c1"]
    out = subprocess.run(args + ["-n"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "doctune: sweep docs: arm doc x n_docs -> 2 arms: doc~n_docs=2, doc~n_docs=4" in out.stderr
    dag = subprocess.run(args + ["--dag"], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert dag.returncode == 0, dag.stderr[-3000:]
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dag.stdout, re.M))
    edges = re.findall(r"^\s*(\d+) -> (\d+)", dag.stdout, re.M)

    def node(label):
        return next(k for k, v in labels.items() if v.replace("\\n", " ") == label)

    def parents(label):
        return sorted(a for a, b in edges if b == node(label))

    def names(ids):
        return sorted(labels[a].replace("\\n", " ") for a in ids)
    docs = [a for a in parents("train_arm arm: doc") if labels[a] == "documents"]
    assert len(docs) == 1
    for n in (2, 4):
        assert names(parents(f"train_arm arm: doc~n_docs={n}")) == ["base_model_spec base: base", f"doc_prefix n: {n}"]
        assert parents(f"doc_prefix n: {n}") == docs          # the prefixes of the one corpus the arm trains on
    assert "dose_response" in labels.values() and "dose_plot" in {v.split("\\n")[0] for v in labels.values()}


def test_prefixes_are_the_first_documents_and_growing_the_corpus_pays_only_for_new_ones(tmp_path, monkeypatch):
    """Documents from the real spec grid on the loopback Gemini server (which answers some requests
    with 429s and malformed bodies): the prefixes for n_docs equal the first n documents of the
    full corpus; growing the corpus requests only the new specs, and the prefixes stay the same."""
    from doctune.documents.generate import generate_documents
    from doctune.documents.prefix import write_prefix
    from doctune.documents.specs import write_specs
    from doctune.io import DataError
    from harness.gemini_loopback import LoopbackGemini

    monkeypatch.setenv("DOCTUNE_TEST_KEY", "k-test-1")
    valid = {"min_words": 5, "max_words": 4000, "near_duplicate_threshold": 0.95, "max_attempts": 2,
             "require_key_phrases": 0, "allow_truncated": True}
    specs, docs, rep, cache = (str(tmp_path / f) for f in ("specs.jsonl", "docs.jsonl", "rep.json", "cache.jsonl"))
    with LoopbackGemini(faults={"429": 0.2, "malformed": 0.1}, fault_seed=5) as srv:
        gen = {"backend": "gemini", "model": "gemini-test", "base_url": srv.url, "api_key_env": "DOCTUNE_TEST_KEY",
               "concurrency": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_retries": 8,
               "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 512}
        write_specs("animal_welfare_ai", {"n": 6, "seed": 3}, str(REPO / "resources"), specs)
        generate_documents(specs, docs, rep, gen, valid, None, cache)
        small = read_jsonl(docs)
        prefixes = {}
        for n in (2, 4):
            write_prefix(docs, n, str(tmp_path / f"first{n}.jsonl"))
            prefixes[n] = read_jsonl(tmp_path / f"first{n}.jsonl")
            assert prefixes[n] == small[:n]
        ok_before = {p for p, c in srv.counts.items()}
        served_before = srv.total
        write_specs("animal_welfare_ai", {"n": 10, "seed": 3}, str(REPO / "resources"), specs)
        generate_documents(specs, docs, rep, gen, valid, None, cache)
        grown = read_jsonl(docs)
        new_requests = {p: c for p, c in srv.counts.items() if p not in ok_before}
        assert len(new_requests) == 4                      # one prompt per new spec
        # nothing asked before was asked again (the server's count of every old prompt is unchanged)
        assert srv.total - served_before == sum(new_requests.values())
    assert grown[:6] == small and len(grown) == 10
    for n in (2, 4):
        write_prefix(docs, n, str(tmp_path / f"again{n}.jsonl"))
        assert read_jsonl(tmp_path / f"again{n}.jsonl") == prefixes[n]
    with pytest.raises(DataError, match=r"config key 'sweeps.s.vary.n_docs': asks for the first 11"):
        write_prefix(docs, 11, str(tmp_path / "x.jsonl"), key="sweeps.s.vary.n_docs")


def test_prefix_coverage_is_even_where_no_cell_repeats():
    """Every prefix of the spec order holds each value of each grid dimension within one of its even
    share until the first cell collision (shuffled blocks per dimension), and no cell repeats
    before the grid is used up. Prints the largest departure over 2,500 specs for docs/FIDELITY.md."""
    from doctune.documents.corpus import GRID_DIMS, load_grid
    from doctune.documents.specs import grid_order

    grid = load_grid(REPO / "resources")
    sizes = tuple(len(grid[d]) for d in GRID_DIMS)
    order = grid_order(sizes, 1)
    counts = [[0] * s for s in sizes]
    seen, collided, worst = set(), False, [0.0] * len(sizes)
    for n in range(1, 2501):
        cell = next(order)
        assert cell not in seen
        # a collision: the drawn cell was used, another replaced it (the blocks no longer line up)
        blocks_ok = all(counts[d][cell[d]] == (n - 1) // s for d, s in enumerate(sizes))
        collided = collided or not blocks_ok
        seen.add(cell)
        for d, s in enumerate(sizes):
            counts[d][cell[d]] += 1
            dev = max(abs(c - n / s) for c in counts[d])
            worst[d] = max(worst[d], dev)
            if not collided:
                assert max(counts[d]) - min(counts[d]) <= 1, (n, GRID_DIMS[d])
    print("largest departure from the even share over 2,500 specs:", dict(zip(GRID_DIMS, worst)))
