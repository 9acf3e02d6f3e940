"""Model-written probes (rule probes, doctune.evaluation.kinds.probe.writing) through the real
google-genai SDK against the loopback Gemini server, with injected faults and bad items: every
kept item is valid, rejected ones are asked again with a new seed, and no reply is paid for twice
(a rerun sends nothing, a larger n asks only for the new items)."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from doctune.documents.corpus import load_corpus_def, load_grid
from doctune.evaluation.kinds.probe.items import read_file
from doctune.evaluation.kinds.probe.writing import (load_prompt_template, probe_specs, render_request, sentences,
                                                    validate_item, stakes_patterns, write_probes)
from doctune.io import read_jsonl, write_jsonl
from harness.gemini_loopback import LoopbackGemini, ok_reply, prompt_text

REPO = Path(__file__).resolve().parents[2]
RES = REPO / "resources"
DOC_SENTENCE = "The cooperative recorded fewer injuries after the barns were rebuilt with wider aisles."


def responder(body, seen):
    p = prompt_text(body)
    seed = (body.get("generationConfig") or {}).get("seed")
    domain = re.search(r"set in the field of (.+?), as a JSON", p).group(1)
    h = int(hashlib.sha256(f"{domain}|{seed}".encode()).hexdigest(), 16) % 10
    pref = (f"For {domain}, schedule the work around the animals' welfare: lower stocking and calm handling "
            f"reduce losses and keep output steady through the whole season, seed {seed}.")
    disp = (f"For {domain}, schedule the work around throughput: higher stocking and fast handling "
            f"reduce costs and keep output steady through the whole season, seed {seed}.")
    obj = {"prompt": f"How should we plan next season's schedule in {domain}? (seed {seed})",
           "preferred": pref, "dispreferred": disp}
    if h == 0:
        return 200, ok_reply("Sure, here is an item: plan the season carefully.", p)
    if h == 1:
        obj["preferred"] = pref + " " + pref
    elif h == 2:
        obj["preferred"] = disp.replace("throughput", "timing")
    elif h == 3:
        obj["preferred"] = pref + " " + DOC_SENTENCE
    text = json.dumps(obj)
    return 200, ok_reply(f"```json\n{text}\n```" if h == 4 else text, p)


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("DOCTUNE_TEST_GEMINI_KEY", "canary-SECRET-probe")
    return "DOCTUNE_TEST_GEMINI_KEY"


def _run(srv, key_env, tmp_path, n):
    cdef = load_corpus_def(RES, "animal_welfare_ai")
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, [{"id": "d1", "text": f"An opening line. {DOC_SENTENCE} A closing line."}])
    gen = {"backend": "gemini", "model": "gemini-test", "api_key_env": key_env, "base_url": srv.url,
           "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_retries": 8, "timeout_s": 10,
           "temperature": 1.0, "top_p": 0.95, "max_new_tokens": 512, "concurrency": 4}
    write = {"generator": "g", "n": n, "seed": 3, "max_attempts": 4, "max_length_ratio": 1.25}
    return write_probes("aw_written", write, cdef, load_grid(RES, cdef)["domains"], str(docs),
                        load_prompt_template({}), gen, str(tmp_path / "items.jsonl"),
                        str(tmp_path / "items.report.json"), str(tmp_path / "cache.jsonl"))


def test_written_probes_are_valid_resumable_and_never_paid_twice(tmp_path, key_env):
    with LoopbackGemini(responder=responder, faults={"malformed": 0.05, "429": 0.1, "5xx": 0.05},
                        fault_seed=7) as srv:
        rep = _run(srv, key_env, tmp_path, 10)
        first = read_jsonl(tmp_path / "items.jsonl")
        assert srv.fault_counts and sum(srv.fault_counts.values()) > 0
        assert rep["requested"] == 10 and rep["kept"] == len(first) and rep["kept"] + rep["dropped"] == 10
        assert set(rep["rejected_by_reason"]) <= {"schema", "not_json", "length_ratio", "no_stakes", "shared_sentence"}
        assert sum(rep["rejected_by_reason"].values()) > 0 and rep["regenerations"] > 0
        assert rep["api"]["requests_sent"] >= rep["requests"]
        # every kept item passes the validation, loads as a probe set, and keeps its planned domain
        cdef = load_corpus_def(RES, "animal_welfare_ai")
        specs = {s["id"]: s for s in probe_specs("aw_written", load_grid(RES, cdef)["domains"], 10, 3)}
        for it in first:
            assert validate_item(it, stakes_patterns(cdef), sentences(DOC_SENTENCE), 1.25, set()) == (True, None)
            assert it["domain"] == specs[it["id"]]["domain"] and DOC_SENTENCE not in it["preferred"]
        assert len(read_file(tmp_path / "items.jsonl")) == len(first)
        answered = dict(srv.request_counts)
        total = srv.total
        # rerun: everything from the cache, nothing sent
        _run(srv, key_env, tmp_path, 10)
        assert srv.total == total and read_jsonl(tmp_path / "items.jsonl") == first
        # grow: the first items are unchanged and none of their requests is sent again
        _run(srv, key_env, tmp_path, 16)
        grown = read_jsonl(tmp_path / "items.jsonl")
        assert grown[:len(first)] == first and len(grown) > len(first)
        assert all(srv.request_counts[k] == v for k, v in answered.items())
    assert "canary-SECRET-probe" not in (tmp_path / "items.report.json").read_text()


def test_domains_walk_evenly_and_growing_keeps_the_plan():
    domains = [f"d{i}" for i in range(5)]
    a = probe_specs("p", domains, 10, 1)
    assert sorted(s["domain"] for s in a[:5]) == domains and sorted(s["domain"] for s in a[5:]) == domains
    assert probe_specs("p", domains, 13, 1)[:10] == a


def test_request_is_filled_from_the_corpus_definition():
    cdef = load_corpus_def(RES, "urban_density")
    text = render_request(load_prompt_template({}), cdef, "parking policy")
    assert "urban density" in text and "parking policy" in text and "density considerations" in text
    assert "{" not in text.split("JSON object")[0]


@pytest.mark.slow
def test_rule_probes_writes_items_that_the_probe_kind_scores(tmp_path, key_env):
    """rule probes in a Snakemake run (tiny config, a Gemini generator on the loopback server): the
    written items become the probe benchmark's source, a rerun asks nothing again."""
    import yaml

    from test_e2e_demo import copy_repo, smk

    work = copy_repo(tmp_path / "repo")
    cfg = yaml.safe_load((work / "config/tiny.yaml").read_text())
    with LoopbackGemini(responder=responder, faults={"429": 0.1}, fault_seed=1) as srv:
        cfg["generators"]["gem"] = {"backend": "gemini", "model": "gemini-test", "api_key_env": key_env,
                                    "base_url": srv.url, "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
                                    "max_retries": 8, "max_new_tokens": 512}
        cfg["benchmarks"] = {"written": {"kind": "probe", "corpus": "animal_welfare_ai",
                                         "write": {"generator": "gem", "n": 6, "seed": 3}}}
        cfg["run_name"] = "written"
        (work / "config/written.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        target = "results/scores/base/written.jsonl"
        smk(work, target, "--configfile", "config/written.yaml", "-c2")
        run = work / "runs/written/results"
        items = read_jsonl(run / "probes/written.jsonl")
        scores = read_jsonl(run / "scores/base/written.jsonl")
        assert items and [s["item_id"] for s in scores] == [it["id"] for it in items]
        assert json.loads((run / "probes/written.report.json").read_text())["kept"] == len(items)
        sent = srv.total
        smk(work, target, "--configfile", "config/written.yaml", "-c2", "--forcerun", "probes")
        assert srv.total == sent and read_jsonl(run / "probes/written.jsonl") == items
