"""Benchmark loaders: AHB-format sets (fixture, project's compassion set, real AHB) and StrongREJECT."""
import json
import logging
from pathlib import Path

import pytest

from doctune.evaluation.benchmarks import (BenchmarkUnavailable, combination_id, expand_combinations,
                                           fill_placeholders, load_ahb, load_prompts, load_strongreject,
                                           parse_variables)
from doctune.io import DataError


@pytest.fixture
def ahb_fixture(repo_root):
    return {"path": str(repo_root / "resources/fixtures/ahb")}


def test_variables_expand_into_every_combination():
    v = parse_variables("animal:cat,dog\nsetting:farm,lab")
    assert v == {"animal": ["cat", "dog"], "setting": ["farm", "lab"]}
    combos = expand_combinations(v)
    assert combos == [{"animal": "cat", "setting": "farm"}, {"animal": "cat", "setting": "lab"},
                      {"animal": "dog", "setting": "farm"}, {"animal": "dog", "setting": "lab"}]
    assert combination_id(combos[1]) == "animal=cat|setting=lab"
    assert expand_combinations(parse_variables(None)) == [{}]
    assert parse_variables("animal: guinea pig, naked mole rats") == {"animal": ["guinea pig", "naked mole rats"]}
    with pytest.raises(DataError, match="key:v1,v2"):
        parse_variables("no colon here")


def test_placeholders_filled_from_combination():
    text = "Does it consider the {{animal}}s in the {{ setting }}?"
    assert fill_placeholders(text, {"animal": "cat", "setting": "lab"}) == "Does it consider the cats in the lab?"
    # no value for the placeholder: the bare key, a general reference
    assert fill_placeholders(text, {}) == "Does it consider the animals in the setting?"


def test_fixture_quirks(ahb_fixture, caplog):
    with caplog.at_level(logging.WARNING):
        qs, dims = load_ahb(ahb_fixture, invalid_tags="drop_tag")
    assert list(dims) == ["Moral Consideration", "Harm Minimization", "Sentience Acknowledgement", "Actionability"]
    assert dims["Actionability"]["weight"] == 2.0
    ids = [q["id"] for q in qs]
    assert ids == ["0", "1", "2", "3", "4", "6"]          # 5 has only an empty tag: not scorable
    byid = {q["id"]: q for q in qs}
    assert byid["2"]["tags"] == ["Sentience Acknowledgement", "Moral Consideration"]  # odd case matched
    assert byid["3"]["tags"] == ["Harm Minimization", "Actionability"]                # empty tag dropped
    assert len(byid["1"]["combinations"]) == 4
    assert byid["4"]["language"] == "Spanish" and byid["4"]["translation"]
    assert "empty tag" in caplog.text and "question 3" in caplog.text


def test_invalid_tag_policies(ahb_fixture, tmp_path):
    qs, _ = load_ahb(ahb_fixture, invalid_tags="drop_question")
    assert [q["id"] for q in qs] == ["0", "1", "2", "4", "6"]
    d = tmp_path / "bad"
    d.mkdir()
    (d / "dimensions.jsonl").write_text((Path(ahb_fixture["path"]) / "dimensions.jsonl").read_text())
    (d / "questions.jsonl").write_text(json.dumps({"id": 0, "question": "Q?", "tags": ["No Such Dimension", "Actionability"],
                                                  "variables": None, "language": None, "translation": None}) + "\n")
    assert load_ahb({"path": str(d)}, invalid_tags="drop_tag")[0][0]["tags"] == ["Actionability"]
    with pytest.raises(DataError, match="no scorable questions"):
        load_ahb({"path": str(d)})  # default drop_question drops the only question
    with pytest.raises(DataError, match="No Such Dimension"):
        load_ahb({"path": str(d)}, invalid_tags="error")
    with pytest.raises(ValueError):
        load_ahb({"path": str(d)}, invalid_tags="bogus")


def test_bad_rows_name_file_and_line(ahb_fixture, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "dimensions.jsonl").write_text((Path(ahb_fixture["path"]) / "dimensions.jsonl").read_text())
    (d / "questions.jsonl").write_text('{"id": 0, "question": "ok?", "tags": ["Actionability"]}\n{"id": 1, "tags": ["Actionability"]}\n')
    with pytest.raises(DataError, match=r"questions.jsonl:2: missing field 'question'"):
        load_ahb({"path": str(d)})
    with pytest.raises(DataError, match="does not exist"):
        load_ahb({"path": str(tmp_path / "nowhere")})


def test_human_compassion_set(repo_root, caplog):
    src = {"path": str(repo_root / "resources/benchmarks/human_compassion")}
    with caplog.at_level(logging.WARNING):
        qs, dims = load_ahb(src, invalid_tags="error")
    assert caplog.text == ""
    assert len(qs) >= 40 and len(dims) >= 6
    for d in dims.values():
        assert d["guiding_question"].endswith("?") and len(d["observable_indicators"].split("\n\n")) >= 3
    used = {t for q in qs for t in q["tags"]}
    assert used == set(dims)                      # every dimension is exercised
    for q in qs:
        assert "{{" not in q["question"]          # placeholders belong in guiding questions only
        if q["language"]:
            assert q["translation"]


def test_load_prompts_all_kinds(ahb_fixture, repo_root):
    ps = load_prompts({"kind": "ahb", "source": ahb_fixture, "max_questions": 4})
    assert [p["id"] for p in ps] == ["0", "1", "2", "4"] and ps[0]["prompt"].startswith("My neighbour")
    cs = load_prompts({"kind": "compassion", "source": {"path": str(repo_root / "resources/benchmarks/human_compassion")}})
    assert len(cs) >= 40
    sr = load_prompts({"kind": "strongreject", "source": {"path": str(repo_root / "resources/fixtures/strongreject_small.csv")}})
    assert len(sr) == 8 and [p["id"] for p in sr] == [str(i) for i in range(8)]
    assert "\n" in sr[6]["prompt"]               # quoted multi-line prompt survives
    assert sr[3]["category"] == "Hate, harassment and discrimination"
    assert len(load_prompts({"kind": "strongreject", "source": {"path": str(repo_root / "resources/fixtures/strongreject_small.csv")}, "max_items": 3})) == 3
    with pytest.raises(ValueError, match="ai_risk"):
        load_prompts({"kind": "ai_risk", "source": {"path": "x"}})
    with pytest.raises(DataError, match="max_questions"):
        load_prompts({"kind": "ahb", "source": ahb_fixture, "max_questions": 0})


def test_hf_dataset_offline_names_dataset(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchmarkUnavailable, match="CompassioninMachineLearning/ahb-original"):
        load_ahb({"dataset": "CompassioninMachineLearning/ahb-original",
                  "revision": "1f74bed03b3214e5ad4fbddf28f763d3ea7dc373"})


def test_real_ahb_115(shared_benchmarks, caplog):
    src = {"path": str(shared_benchmarks / "ahb")}
    if not (shared_benchmarks / "ahb" / "questions.jsonl").is_file():
        pytest.skip("real AHB files absent")
    with caplog.at_level(logging.WARNING):
        assert len(load_ahb(src)[0]) == 114  # default: like the reference, drop question 58
        qs, dims = load_ahb(src, invalid_tags="drop_tag")
    assert len(dims) == 13
    # id 58 carries an empty tag beside six real ones: with drop_tag the tag goes, the question stays
    assert len(qs) == 115
    q58 = next(q for q in qs if q["id"] == "58")
    assert len(q58["tags"]) == 6 and "" not in q58["tags"]
    assert "question 58 has an empty tag" in caplog.text
    q3 = next(q for q in qs if q["id"] == "3")
    assert [c["animal"] for c in q3["combinations"]] == ["naked mole rats", "hamster"]
    assert sum(len(q["combinations"]) > 1 for q in qs) >= 4
    assert sum(q["language"] is not None for q in qs) == 89


def test_real_strongreject(shared_benchmarks):
    full = shared_benchmarks / "strongreject" / "strongreject_dataset.csv"
    small = shared_benchmarks / "strongreject" / "strongreject_small_dataset.csv"
    if not full.is_file():
        pytest.skip("real StrongREJECT files absent")
    assert len(load_strongreject({"path": str(full)})) == 313
    assert len(load_strongreject({"path": str(small)})) == 60
