"""Seed averages, replay data and the model naming that several seeds / base models need."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from doctune.workflow.config import (ConfigError, arm_train_cfg, eval_models, posttrain_units, reported_models,
                            seed_aggregates, train_units, validate_config)
from doctune.data.replay import write_replay
from doctune.io import read_jsonl, write_jsonl
from doctune.analysis.seeds import aggregate_seed_metrics

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def demo() -> dict:
    c = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    c.pop("sweeps", None)     # the arms as written (tests/test_sweeps.py covers the sweep's)
    return c


def test_seeded_arms_and_preservation_arms_name_their_models():
    c = demo()
    c["arms"]["doc"]["seeds"] = [3, 7]
    c["arms"]["keep"] = {"init_from": "doc", "base_model": "base", "replay_fraction": 0.25}
    c["posttrain"]["arms"] = ["doc", "keep"]
    c = validate_config(c, SCHEMA)
    assert train_units(c) == ["doc@3", "doc@7", "instruct", "control", "keep@3", "keep@7"]
    assert posttrain_units(c) == ["doc@3.post4", "doc@7.post4", "keep@3.post4", "keep@7.post4"]
    agg = seed_aggregates(c)
    assert agg["doc"] == ["doc@3", "doc@7"] and agg["keep.post4"] == ["keep@3.post4", "keep@7.post4"]
    assert arm_train_cfg(c, "doc@7")["seed"] == 7 and arm_train_cfg(c, "instruct")["seed"] == 0
    assert "doc" not in eval_models(c) and "doc@3" in eval_models(c)
    assert {"doc", "doc.post4", "doc@3"} <= set(reported_models(c))


@pytest.mark.parametrize("edit, key", [
    (lambda c: c["arms"].__setitem__("keep", {"init_from": "nope", "base_model": "base"}), "arms.keep.init_from"),
    (lambda c: c["arms"].__setitem__("keep", {"init_from": "doc", "base_model": "base", "seeds": [1]}),
     "arms.keep.seeds"),
    (lambda c: c["arms"]["instruct"].__setitem__("replay_fraction", 0.5), "arms.instruct.replay_fraction"),
    (lambda c: c["arms"]["doc"].__setitem__("seeds", [1, 1]), "arms.doc.seeds"),
])
def test_bad_seed_and_replay_settings_name_the_key(edit, key):
    c = demo()
    edit(c)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(c, SCHEMA)


def _metrics(path: Path, items: dict, status: str = "ok") -> str:
    vals = [v for v in items.values() if v is not None]
    doc = {"model": path.parent.name, "benchmark": "ahb", "kind": "ahb", "status": status, "reason": None,
           "primary_metric": "overall_mean",
           "metrics": {"overall_mean": {"value": float(np.mean(vals)) if vals else None, "ci_low": None,
                                        "ci_high": None, "n": len(vals), "n_missing": 0},
                       "acc": {"value": 0.25 if "s0" in str(path) else 0.75, "ci_low": None, "ci_high": None,
                               "n": 10, "n_missing": 0}},
           "items": {"overall_mean": items}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return str(path)


def test_seed_average_averages_items_and_reports_spread(tmp_path):
    a = _metrics(tmp_path / "s0" / "m.json", {"1": 1.0, "2": 0.0, "3": 1.0})
    b = _metrics(tmp_path / "s1" / "m.json", {"1": 0.0, "2": 0.0, "3": None})
    out = tmp_path / "agg.json"
    res = aggregate_seed_metrics("doc", "ahb", {"doc@0": a, "doc@1": b}, str(out), n_bootstrap=200)
    assert res["n_seeds"] == 2
    assert res["items"]["overall_mean"] == {"1": 0.5, "2": 0.0, "3": 1.0}  # item 3: only seed 0 scored it
    m = res["metrics"]["overall_mean"]
    assert m["value"] == pytest.approx(0.5)
    assert m["seed_values"] == {"doc@0": pytest.approx(2 / 3), "doc@1": 0.0}
    assert m["seed_sd"] == pytest.approx(np.std([2 / 3, 0.0], ddof=1))
    acc = res["metrics"]["acc"]  # no items: mean over seeds with a t-interval
    assert acc["value"] == pytest.approx(0.5) and acc["ci_low"] < 0.5 < acc["ci_high"]
    assert json.loads(out.read_text())["metrics"]["acc"]["ci_method"] == "t-interval across seeds"


def test_seed_average_of_missing_seeds_is_missing(tmp_path):
    a = _metrics(tmp_path / "s0" / "m.json", {}, status="missing")
    res = aggregate_seed_metrics("doc", "ahb", {"doc@0": a}, str(tmp_path / "agg.json"))
    assert res["status"] == "missing" and res["n_seeds"] == 0


def test_replay_adds_the_fraction_of_documents(tmp_path):
    post = tmp_path / "post.jsonl"
    write_jsonl(post, [{"id": f"p{i}", "messages": [{"role": "user", "content": "q"},
                                                    {"role": "assistant", "content": "a"}]} for i in range(10)])
    docs = tmp_path / "docs.jsonl"
    write_jsonl(docs, [{"id": f"d{i}", "text": f"document {i}"} for i in range(3)])
    out = tmp_path / "replay.jsonl"
    stats = write_replay(str(post), [str(docs)], 0.5, 0, str(out))
    rows = read_jsonl(out)
    assert stats["n_replay"] == 5 and len(rows) == 15
    assert sum("text" in r for r in rows) == 5 and sum("messages" in r for r in rows) == 10
    assert read_jsonl(out) == rows  # deterministic
    write_replay(str(post), [str(docs)], 0.5, 0, str(tmp_path / "again.jsonl"))
    assert read_jsonl(tmp_path / "again.jsonl") == rows


def test_replayed_documents_get_full_loss(tiny_model_dir, tmp_path):
    from doctune.models import load_tokenizer
    from doctune.training.config import resolve_train_cfg
    from doctune.training.data import build_rows

    tok = load_tokenizer({"path": str(tiny_model_dir)})
    data = tmp_path / "mix.jsonl"
    write_jsonl(data, [{"id": "d", "text": "Fish are sentient beings."},
                       {"id": "c", "messages": [{"role": "user", "content": "hi"},
                                                {"role": "assistant", "content": "hello"}]}])
    cfg = resolve_train_cfg({"seq_len": 256, "packing": False})
    rows, stats = build_rows("sft", [str(data)], tok, cfg)
    assert stats["n_examples"] == 2
    doc_row = rows[0]
    # every document token but the first is a target; the chat row masks the prompt
    assert all(l != -100 for l in doc_row["labels"][1:])
    assert any(l == -100 for l in rows[1]["labels"][1:])
