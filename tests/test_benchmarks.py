"""Benchmark loaders (through the kinds): AHB-format sets in each published layout (fixture,
the project's compassion set, the real AHB, ahb-original quirks, ANIMA snapshot folders),
StrongREJECT, and the kind registry / check hook."""
import json
import logging
from pathlib import Path

import pytest

from doctune.evaluation.kinds import get_kind, kind_names
from doctune.evaluation.kinds.ahb import combination_id, expand_combinations, parse_variables, variable_sets
from doctune.evaluation.kinds.ahb import fill_all_placeholders as fill_placeholders
from doctune.evaluation.kinds.common import BenchmarkUnavailable
from doctune.evaluation.kinds.strongreject import load_strongreject


def load_prompts(bench_cfg):
    return get_kind(bench_cfg["kind"]).prompts(bench_cfg)
from doctune.io import DataError


def load(source, **cfg):
    data = get_kind(cfg.pop("kind", "ahb")).load({"source": source, **cfg})
    return data.items, data.info["dimensions"], data.info


@pytest.fixture
def ahb_fixture(repo_root):
    return {"path": str(repo_root / "resources/fixtures/ahb")}


def _write_set(d: Path, questions, dims):
    d.mkdir(parents=True, exist_ok=True)
    (d / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (d / "dimensions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in dims))
    return {"path": str(d)}


DIMS = [{"dimension": "Moral Consideration", "guiding_question": "Does it weigh the {{animal}}s?",
         "scoring": "", "observable_indicators": "Says so", "default_weighting": 1.0},
        {"dimension": "Trade-Off Transparency", "guiding_question": "Does it weigh trade-offs?",
         "scoring": "", "observable_indicators": "Names costs", "default_weighting": 1.0}]


def test_registry_and_stages():
    assert set(kind_names()) >= {"ahb", "compassion", "strongreject", "ai_risk", "lm_eval"}
    assert {k for k in kind_names() if get_kind(k).stage == "judge"} == {"ahb", "compassion", "strongreject"}
    assert get_kind("ai_risk").stage == "logprob" and get_kind("lm_eval").stage == "lm_eval"
    assert get_kind("lm_eval").output_file("m", "hs") == "results/lm_eval/m/hs.json"
    assert get_kind("ahb").output_file("m", "a") == "results/scores/m/a.jsonl"
    with pytest.raises(ValueError, match="did you mean 'strongreject'"):
        get_kind("strong_reject")


def test_variables_as_the_reference_reads_them():
    v = parse_variables("animal:cat,dog\nsetting:farm,lab")
    assert v == {"animal": ["cat", "dog"], "setting": ["farm", "lab"]}
    combos = expand_combinations(v)
    assert combos[1] == {"animal": "cat", "setting": "lab"} and len(combos) == 4
    assert combination_id(combos[1]) == "animal=cat|setting=lab"
    assert parse_variables(None) == {} and expand_combinations({}) == [{}]
    assert parse_variables("animal: guinea pig, naked mole rats") == {"animal": ["guinea pig", "naked mole rats"]}
    assert parse_variables("no colon here\nanimal:cat") == {"animal": ["cat"]}   # skipped, as the reference


def test_variable_sets_only_for_referenced_placeholders():
    v = {"animal": ["cat", "dog"], "setting": ["farm", "lab"]}
    assert variable_sets("No placeholders here?", v) == [{}]
    assert variable_sets("The {{animal}}s?", v) == [{"animal": "cat"}, {"animal": "dog"}]
    assert len(variable_sets("The {{animal}}s in the {{setting}}?", v)) == 4
    # a placeholder the question has no values for is filled with its own name
    assert variable_sets("The {{species}}?", v) == [{"species": "species"}]
    assert fill_placeholders("The {{animal}}s in the {{setting}}?", {"animal": "cat", "setting": "lab"}) == \
        "The cats in the lab?"
    assert fill_placeholders("The {{animal}}s in the {{setting}}?", {"animal": "cat"}) == "The cats in the setting?"


def test_fixture(ahb_fixture, caplog):
    with caplog.at_level(logging.WARNING):
        qs, dims, info = load(ahb_fixture)
    assert list(dims) == ["Moral Consideration", "Harm Minimization", "Sentience Acknowledgement", "Actionability"]
    assert dims["Actionability"]["weight"] == 2.0
    assert [q["id"] for q in qs] == ["0", "1", "2", "4", "6"]    # 3 (an empty tag) and 5 (only "") dropped
    assert [(d["id"], d["tags"]) for d in info["dropped"]] == [("3", ["Harm Minimization", "Actionability", ""]),
                                                               ("5", [""])]
    byid = {q["id"]: q for q in qs}
    assert byid["4"]["language"] == "Spanish" and byid["4"]["translation"]
    assert "question 3 dropped" in caplog.text
    qs, _, info = load(ahb_fixture, invalid_tags="drop_tag")
    assert [q["id"] for q in qs] == ["0", "1", "2", "3", "4", "6"] and len(info["dropped"]) == 1
    assert {q["id"]: q for q in qs}["3"]["tags"] == ["Harm Minimization", "Actionability"]


def test_tag_close_to_a_dimension_is_an_error_naming_it(tmp_path):
    q = {"id": 0, "question": "Q?", "tags": ["moral consideration"], "variables": None}
    src = _write_set(tmp_path / "a", [q], DIMS)
    with pytest.raises(DataError, match=r"questions.jsonl:1: question 0: tag 'moral consideration'.*"
                                        r"did you mean 'Moral Consideration'.*tag_aliases"):
        load(src)
    q["tags"] = ["Trade-off Transparency"]
    src = _write_set(tmp_path / "b", [q], DIMS)
    with pytest.raises(DataError, match="did you mean 'Trade-Off Transparency'"):
        load(src)
    qs, _, _ = load(src, tag_aliases={"Trade-off Transparency": "Trade-Off Transparency"})
    assert qs[0]["tags"] == ["Trade-Off Transparency"]
    with pytest.raises(DataError, match="tag_aliases.*names no dimension.*did you mean"):
        load(src, tag_aliases={"Trade-off Transparency": "Trade-Off Transparancy"})
    # a tag far from every dimension drops the question (reference), or is an error / dropped alone
    q["tags"] = ["Moral Consideration", "Perspective-Taking"]
    src = _write_set(tmp_path / "c", [q, dict(q, id=1, tags=["Moral Consideration"])], DIMS)
    qs, _, info = load(src)
    assert [x["id"] for x in qs] == ["1"] and info["dropped"][0]["tags"] == ["Moral Consideration", "Perspective-Taking"]
    assert [x["id"] for x in load(src, ignore_tags=["Perspective-Taking"])[0]] == ["0", "1"]
    with pytest.raises(DataError, match="Perspective-Taking"):
        load(src, invalid_tags="error")


def test_ahb_original_quirks_by_name(tmp_path):
    """The 26-question original: 'Trade-off' spelling and the 14th tag, handled by the layout."""
    qs = [{"id": i, "question": f"Q{i}?", "tags": ["Trade-off Transparency", "Perspective-Taking"] if i % 2 else
           ["Moral Consideration"], "variables": "animal:cat" if i % 3 == 0 else None} for i in range(26)]
    src = _write_set(tmp_path / "orig", qs, DIMS)
    items, _, info = load({**src, "layout": "ahb-original"})
    assert len(items) == 26 and not info["dropped"]
    assert items[1]["tags"] == ["Trade-Off Transparency"]
    with pytest.raises(DataError, match="did you mean 'Trade-Off Transparency'"):
        load(src)                                        # the same files without the layout


def test_published_layouts_same_questions(tmp_path):
    """questions.jsonl/dimensions.jsonl (CaML GitHub), questions/ + dimensions/ folders of parquet
    (a HuggingFace snapshot of anima), and explicit files give the same items."""
    import pandas as pd

    qs = [{"id": 0, "question": "Q0?", "tags": ["Moral Consideration"], "variables": "animal:cat,dog",
           "language": None, "translation": None},
          {"id": 1, "question": "Q1?", "tags": ["Trade-Off Transparency"], "variables": None,
           "language": "French", "translation": "Q1 in English?"}]
    a = _write_set(tmp_path / "jsonl", qs, DIMS)
    snap = tmp_path / "snapshot"
    (snap / "questions").mkdir(parents=True)
    (snap / "dimensions").mkdir()
    pd.DataFrame(qs).to_parquet(snap / "questions" / "train-00000-of-00001.parquet")
    pd.DataFrame(DIMS).to_parquet(snap / "dimensions" / "train-00000-of-00001.parquet")
    b = {"path": str(snap)}
    c = {"questions_file": str(tmp_path / "jsonl" / "questions.jsonl"),
         "dimensions_file": str(tmp_path / "jsonl" / "dimensions.jsonl")}
    strip = lambda items: [{k: v for k, v in q.items() if k != "where"} for q in items]  # noqa: E731
    ia, da, _ = load(a)
    for src in (b, c):
        ib, db, _ = load(src)
        assert strip(ib) == strip(ia) and db == da
    # a languages filter (the reference's: null = English)
    assert [q["id"] for q in load(a, languages=["English"])[0]] == ["0"]
    assert [q["id"] for q in load(a, languages=["French"])[0]] == ["1"]
    with pytest.raises(DataError, match="no scorable questions in languages"):
        load(a, languages=["Klingon"])


def test_pre_rename_dimension_columns(tmp_path):
    cols = [{"name": d["dimension"], "question": d["guiding_question"], "indicators": d["observable_indicators"],
             "weight": d["default_weighting"]} for d in DIMS]
    src = _write_set(tmp_path / "old", [{"id": 0, "question": "Q?", "tags": ["Moral Consideration"]}], cols)
    with pytest.raises(DataError, match=r"dimensions.jsonl:1: missing column 'dimension'.*dimension_columns"):
        load(src)
    mapping = {"dimension": "name", "guiding_question": "question", "observable_indicators": "indicators",
               "default_weighting": "weight"}
    _, dims, _ = load({**src, "dimension_columns": mapping})
    assert dims["Moral Consideration"]["guiding_question"] == "Does it weigh the {{animal}}s?"


def test_bad_rows_name_file_and_line(tmp_path):
    src = _write_set(tmp_path / "bad", [{"id": 0, "question": "ok?", "tags": ["Moral Consideration"]},
                                        {"tags": ["Moral Consideration"]}], DIMS)
    with pytest.raises(DataError, match=r"questions.jsonl:2: missing field 'id'"):
        load(src)
    with pytest.raises(DataError, match="not a folder"):
        load({"path": str(tmp_path / "nowhere")})
    errs = get_kind("ahb").check({"kind": "ahb", "source": src})
    assert len(errs) == 1 and "questions.jsonl:2" in errs[0]
    assert "did you mean 'reference'" in get_kind("ahb").check(
        {"kind": "ahb", "source": src, "judge_format": "referense"})[0]


def test_human_compassion_set(repo_root, caplog):
    src = {"path": str(repo_root / "resources/benchmarks/human_compassion")}
    with caplog.at_level(logging.WARNING):
        qs, dims, info = load(src, kind="compassion", invalid_tags="error")
    assert caplog.text == "" and not info["dropped"]
    assert len(qs) >= 40 and len(dims) >= 6
    for d in dims.values():
        assert d["guiding_question"].endswith("?") and len(d["indicators"].split("\n\n")) >= 3
    assert {t for q in qs for t in q["tags"]} == set(dims)       # every dimension is exercised
    for q in qs:
        assert "{{" not in q["question"]
        if q["language"]:
            assert q["translation"]


def test_load_prompts_all_kinds(ahb_fixture, repo_root):
    ps = load_prompts({"kind": "ahb", "source": ahb_fixture, "max_questions": 4})
    assert [p["id"] for p in ps] == ["0", "1", "2", "4"] and ps[0]["prompt"].startswith("My neighbour")
    cs = load_prompts({"kind": "compassion", "source": {"path": str(repo_root / "resources/benchmarks/human_compassion")}})
    assert len(cs) >= 40
    small = {"path": str(repo_root / "resources/fixtures/strongreject_small.csv")}
    sr = load_prompts({"kind": "strongreject", "source": small})
    assert len(sr) == 8 and [p["id"] for p in sr] == [str(i) for i in range(8)]
    assert "\n" in sr[6]["prompt"]               # quoted multi-line prompt survives
    assert sr[3]["category"] == "Hate, harassment and discrimination"
    assert len(load_prompts({"kind": "strongreject", "source": small, "max_items": 3})) == 3
    with pytest.raises(ValueError, match="ai_risk"):
        load_prompts({"kind": "ai_risk", "source": {"path": "x"}})


def test_hf_dataset_offline_names_dataset(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BenchmarkUnavailable, match="CompassioninMachineLearning/ahb-original"):
        load({"dataset": "CompassioninMachineLearning/ahb-original",
              "revision": "1f74bed03b3214e5ad4fbddf28f763d3ea7dc373"})


def test_real_ahb_115(shared_benchmarks, caplog):
    src = {"path": str(shared_benchmarks / "ahb")}
    if not (shared_benchmarks / "ahb" / "questions.jsonl").is_file():
        pytest.skip("real AHB files absent")
    with caplog.at_level(logging.WARNING):
        qs, dims, info = load(src)
    assert len(dims) == 13 and len(qs) == 114        # as the reference: question 58 (tag "") dropped
    assert [(d["id"], "" in d["tags"]) for d in info["dropped"]] == [("58", True)]
    assert "question 58 dropped" in caplog.text
    qs, _, _ = load(src, invalid_tags="drop_tag")
    assert len(qs) == 115 and len(next(q for q in qs if q["id"] == "58")["tags"]) == 6
    q3 = next(q for q in qs if q["id"] == "3")
    assert q3["variables"] == {"animal": ["naked mole rats", "hamster"]}
    assert sum(q["language"] is not None for q in qs) == 89
    assert len(load(src, languages=["English"])[0]) == 30     # 26 originals (null) + 4 marked English


def test_real_strongreject(shared_benchmarks):
    full = shared_benchmarks / "strongreject" / "strongreject_dataset.csv"
    small = shared_benchmarks / "strongreject" / "strongreject_small_dataset.csv"
    if not full.is_file():
        pytest.skip("real StrongREJECT files absent")
    assert len(load_strongreject({"path": str(full)})) == 313
    assert len(load_strongreject({"path": str(small)})) == 60
