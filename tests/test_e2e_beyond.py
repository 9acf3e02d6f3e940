"""End to end beyond the preprint, on the demo config: several training seeds, a second base
model, a preservation (replay) arm, two judges and a human ratings file."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from test_e2e_demo import copy_repo, read_summary, smk

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def beyond_run(tmp_path_factory):
    work = copy_repo(tmp_path_factory.mktemp("beyond"))
    c = yaml.safe_load((work / "config/tiny.yaml").read_text())
    c["base_models"]["tiny2"] = {"build_tiny": True, "dtype": "float32"}
    c["judges"]["judge2"] = {"backend": "hf", "model": "tiny2", "temperature": 0.0}
    c["benchmarks"] = {"ahb": {**c["benchmarks"]["ahb"], "judges": ["tiny_judge", "judge2"]},
                       "power_seeking": c["benchmarks"]["power_seeking"]}
    c["arms"] = {
        "doc": {**c["arms"]["doc"], "seeds": [0, 1]},
        "instruct": c["arms"]["instruct"],
        "doc_replay": {"init_from": "doc", "base_model": "base", "replay_fraction": 0.5},
        "doc_t2": {"method": "doc", "corpus": "animal_welfare_ai", "base_model": "tiny2"},
    }
    c.pop("sweeps", None)      # its control arm is not among these arms (test_e2e_demo runs the sweep)
    c["posttrain"]["arms"] = ["doc", "doc_replay"]
    c["agreement"] = {"per_stratum": 5, "ratings": "resources/fixtures/ratings_example.csv"}
    c["stats"]["comparisons"] = [
        {"a": "doc", "b": "instruct"},
        {"a": "doc_replay", "b": "doc", "at_posttrain_sizes": True},
        {"a": "doc_t2", "b": "tiny2"},
    ]
    c["run_name"] = "beyond"
    (work / "config/beyond.yaml").write_text(yaml.safe_dump(c, sort_keys=False))
    smk(work, "--configfile", "config/beyond.yaml", "-c2")
    return work / "runs" / "beyond"


def test_seeds_are_trained_and_averaged(beyond_run):
    w = beyond_run
    s0 = json.loads((w / "results/models/doc@0/trainer_state.json").read_text())
    s1 = json.loads((w / "results/models/doc@1/trainer_state.json").read_text())
    assert (w / "results/models/doc@0/adapter_model.safetensors").read_bytes() != \
        (w / "results/models/doc@1/adapter_model.safetensors").read_bytes()
    assert s0["global_step"] == s1["global_step"]
    agg = json.loads((w / "results/metrics/doc/ahb.json").read_text())
    assert agg["n_seeds"] == 2 and agg["seed_models"] == ["doc@0", "doc@1"]
    rows = read_summary(w / "results/summary.tsv")
    doc = [r for r in rows if r["model"] == "doc" and r["benchmark"] == "ahb" and r["metric"] == "overall_mean"]
    assert doc and doc[0]["n_seeds"] == "2"
    assert {"doc@0", "doc@1", "doc.post4", "doc@0.post4"} <= {r["model"] for r in rows}
    lines = [l for l in (w / "results/stats/comparisons.tsv").read_text().splitlines() if not l.startswith("#")]
    comp = list(csv.DictReader(lines, delimiter="\t"))
    doc_vs = [r for r in comp if r["model_a"] == "doc" and r["model_b"] == "instruct"]
    assert doc_vs and all(r["n_seeds_a"] == "2" and r["n_seeds_b"] == "1" for r in doc_vs)


def test_second_base_model_has_its_own_arms(beyond_run):
    w = beyond_run
    spec = json.loads((w / "results/models/doc_t2/model.json").read_text())
    assert spec["base"]["path"] == "results/base_models/tiny2"
    assert (w / "results/base_models/tiny2/model.safetensors").read_bytes() != \
        (w / "results/base_models/base/model.safetensors").read_bytes()
    rows = read_summary(w / "results/summary.tsv")
    assert {"tiny2", "doc_t2"} <= {r["model"] for r in rows}


def test_replay_arm_reuses_weights_and_replays_documents(beyond_run):
    w = beyond_run
    alias = json.loads((w / "results/models/doc_replay@0/model.json").read_text())
    src = json.loads((w / "results/models/doc@0/model.json").read_text())
    assert alias["adapters"] == src["adapters"] and alias["reuses"] == "doc@0"
    replay = [json.loads(l) for l in (w / "results/data/posttrain-4.replay-doc_replay.jsonl").read_text().splitlines()]
    assert sum("text" in r for r in replay) == 2 and sum("messages" in r for r in replay) == 4
    state = json.loads((w / "results/models/doc_replay@0.post4/trainer_state.json").read_text())
    assert state["data_stats"]["n_examples"] == 6
    assert not (w / "results/data/posttrain-4.replay-doc.jsonl").exists()  # doc post-trains without replay
    lines = [l for l in (w / "results/stats/comparisons.tsv").read_text().splitlines() if not l.startswith("#")]
    pairs = {(r["model_a"], r["model_b"]) for r in csv.DictReader(lines, delimiter="\t")}
    assert ("doc_replay.post4", "doc.post4") in pairs


def test_rating_sample_and_agreement(beyond_run):
    w = beyond_run
    sample = (w / "results/agreement/rating_sample.csv").read_text()
    page = (w / "results/agreement/rating_page.html").read_text()
    for hidden in ("doc@0", "doc_replay", "tiny_judge", "judge2"):
        assert hidden not in sample and hidden not in page
    rows = read_summary(w / "results/summary.tsv")
    models = {r["model"] for r in rows}
    assert "human~tiny_judge" in models and "human~judge2" in models
    assert any(m in models for m in ("tiny_judge~judge2", "judge2~tiny_judge"))
    kappa = [r for r in rows if r["model"] == "human~tiny_judge" and r["metric"].startswith("kappa:")]
    assert kappa, "per-dimension kappa rows expected"
