"""Advanced-ai-risk scoring: answer log-probabilities under the chat template."""
import json
import math

import pytest

from doctune.evaluation.kinds.ai_risk import load_items, score_ai_risk
from doctune.io import DataError, read_jsonl
from doctune.llm.base import GenRequest
from doctune.llm.hf import HFBackend

FIXTURES = ["power-seeking-inclination.jsonl", "corrigible-neutral-HHH.jsonl"]


@pytest.fixture(scope="module")
def backend(tiny_spec):
    return HFBackend({"backend": "hf", "spec": tiny_spec, "batch_size": 5})


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_scores(tmp_path, repo_root, backend, name):
    path = repo_root / "resources" / "fixtures" / "advanced-ai-risk" / name
    out = tmp_path / "scores.jsonl"
    rows = score_ai_risk({}, {"source": {"path": str(path)}, "max_items": 6}, str(out), backend=backend)
    assert read_jsonl(out) == rows
    assert [r["item_id"] for r in rows] == [str(i) for i in range(6)]
    items = load_items({"source": {"path": str(path)}})
    assert len(items) >= 12
    for r, it in zip(rows, items):
        lm, lnm = r["logprob_matching"], r["logprob_not_matching"]
        assert lm < 0 and lnm < 0
        assert r["matching_prob"] == pytest.approx(math.exp(lm) / (math.exp(lm) + math.exp(lnm)))
        assert r["prefers_matching"] == (lm > lnm) == (r["matching_prob"] > 0.5)
        assert r["matching_answer"] == it["matching"] and r["model"] == "base"
        # the number is the log-probability of "(A)"/"(B)" as the assistant's reply
        direct = backend.option_logprobs(
            [GenRequest(key="x", messages=[{"role": "user", "content": it["question"]}])],
            [[it["matching"].strip()]])[0][0]
        assert lm == pytest.approx(direct, abs=1e-5)


def test_raw_format_keeps_leading_space(tmp_path, repo_root, backend):
    path = repo_root / "resources" / "fixtures" / "advanced-ai-risk" / FIXTURES[0]
    rows = score_ai_risk({}, {"source": {"path": str(path)}, "max_items": 2, "prompt_format": "raw"},
                         str(tmp_path / "o.jsonl"), backend=backend)
    it = load_items({"source": {"path": str(path)}})[0]
    assert it["matching"].startswith(" (")
    direct = backend.option_logprobs(
        [GenRequest(key="x", messages=[{"role": "user", "content": it["question"]}], raw_prompt=True)],
        [[it["matching"]]])[0][0]
    assert rows[0]["logprob_matching"] == pytest.approx(direct, abs=1e-5)


def test_list_of_not_matching_answers(tmp_path, backend):
    f = tmp_path / "multi.jsonl"
    f.write_text(json.dumps({"question": "Pick one.\n\nChoices:\n (A) x\n (B) y\n (C) z\n\nAnswer:",
                             "answer_matching_behavior": " (A)",
                             "answer_not_matching_behavior": [" (B)", " (C)"]}) + "\n")
    row = score_ai_risk({}, {"source": {"path": str(f)}}, str(tmp_path / "o.jsonl"), backend=backend)[0]
    req = GenRequest(key="x", messages=[{"role": "user", "content": "Pick one.\n\nChoices:\n (A) x\n (B) y\n (C) z\n\nAnswer:"}])
    a, b, c = backend.option_logprobs([req], [["(A)", "(B)", "(C)"]])[0]
    assert row["logprob_not_matching"] == pytest.approx(math.log(math.exp(b) + math.exp(c)), abs=1e-5)
    assert row["matching_prob"] == pytest.approx(math.exp(a) / (math.exp(a) + math.exp(b) + math.exp(c)), abs=1e-6)


@pytest.mark.parametrize("line,match", [
    ('{"question": "q", "answer_matching_behavior": " (A)"}', "answer_not_matching_behavior"),
    ('{"question": "", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}', "question"),
    ('{"question": "q", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": "(A)"}', "same"),
    ('{"question": "q", "answer_matching_behavior": 1, "answer_not_matching_behavior": " (B)"}', "answer_matching"),
    ('{"question": "q", ', "invalid JSON"),
])
def test_malformed_rows_name_file_and_line(tmp_path, line, match):
    f = tmp_path / "bad.jsonl"
    good = json.dumps({"question": "q", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"})
    f.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(DataError, match=rf"bad\.jsonl:3: .*{match}"):
        load_items({"source": {"path": str(f)}})


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="source"):
        load_items({})
    with pytest.raises(FileNotFoundError):
        load_items({"source": {"path": str(tmp_path / "nope.jsonl")}})


def test_default_source_is_lm_generated(monkeypatch):
    seen = {}

    class FakeDatasets:
        @staticmethod
        def load_dataset(name, revision=None, data_files=None, split=None):
            seen.update(name=name, data_files=data_files)
            return [{"question": "q?", "answer_matching_behavior": " (A)", "answer_not_matching_behavior": " (B)"}]

    import sys

    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets)
    items = load_items({"subset": "power-seeking-inclination"})
    assert seen["data_files"] == "advanced-ai-risk/lm_generated_evals/power-seeking-inclination.jsonl"
    assert items[0]["item_id"] == "0"


@pytest.mark.parametrize("kind", ["lm_generated_evals", "human_generated_evals"])
@pytest.mark.parametrize("name", FIXTURES)
def test_real_files_load(shared_benchmarks, tmp_path, backend, kind, name):
    path = shared_benchmarks / "advanced-ai-risk" / kind / name
    if not path.is_file():
        pytest.skip(f"{path} not present")
    items = load_items({"source": {"path": str(path)}})
    n_lines = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(items) == n_lines
    assert all(it["matching"].startswith(" (") for it in items)
    rows = score_ai_risk({}, {"source": {"path": str(path)}, "max_items": 3}, str(tmp_path / "o.jsonl"),
                         backend=backend)
    assert len(rows) == 3 and all(0.0 < r["matching_prob"] < 1.0 for r in rows)


def test_loads_model_from_spec(tmp_path, repo_root, tiny_spec, backend):
    path = repo_root / "resources" / "fixtures" / "advanced-ai-risk" / FIXTURES[1]
    cfg = {"source": {"path": str(path)}, "max_items": 3, "batch_size": 2}
    rows = score_ai_risk(tiny_spec, cfg, str(tmp_path / "a.jsonl"))
    again = score_ai_risk({}, cfg, str(tmp_path / "b.jsonl"), backend=backend)
    for r, s in zip(rows, again):
        assert r["logprob_matching"] == pytest.approx(s["logprob_matching"], abs=1e-5)


def test_human_assistant_mode_equals_lm_eval_advanced_ai_risk(tmp_path, repo_root, backend, tiny_spec, monkeypatch):
    """prompt_format human_assistant scores the items as lm-eval's advanced_ai_risk tasks do
    ('Human: {question}\\n\\nAssistant:', answers as written, target_delimiter ''): lm-eval run on
    the same items and the same tiny model gives the same log-likelihoods and the same choice."""
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    import doctune.models as dm

    monkeypatch.chdir(tmp_path)
    items_file = tmp_path / "items.jsonl"
    rows_in = []
    for name in FIXTURES:
        with (repo_root / "resources" / "fixtures" / "advanced-ai-risk" / name).open() as fh:
            rows_in += [json.loads(line) for line in fh if line.strip()]
    items_file.write_text("".join(json.dumps(r) + "\n" for r in rows_in))
    ours = score_ai_risk({}, {"source": {"path": str(items_file)}, "prompt_format": "human_assistant"},
                         str(tmp_path / "o.jsonl"), backend=backend)
    # lm-eval's own task definition of advanced_ai_risk, on a local copy of the same items
    import yaml

    tdir = pytest.importorskip("lm_eval.tasks.model_written_evals").__path__[0]
    template = yaml.safe_load(open(f"{tdir}/advanced_ai_risk/_template_yaml"))
    task = {**{k: template[k] for k in ("output_type", "target_delimiter", "doc_to_text", "doc_to_target",
                                        "doc_to_choice", "metric_list")},
            "task": "ai_risk_local", "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": {"validation": str(items_file)}}, "validation_split": "validation"}
    assert task["doc_to_text"] == "Human: {{question}}\n\nAssistant:" and task["target_delimiter"] == ""
    model, tok = dm.load_model(tiny_spec)
    tm = TaskManager()
    loaded = tm.load([task])
    res = lm_eval.simple_evaluate(model=HFLM(pretrained=model, tokenizer=tok, batch_size=4),
                                  tasks=list(loaded["tasks"].values()), log_samples=True, task_manager=tm,
                                  bootstrap_iters=0)
    samples = sorted(res["samples"]["ai_risk_local"], key=lambda s: s["doc_id"])
    assert len(samples) == len(ours) == len(rows_in)
    max_diff = 0.0
    for s, r in zip(samples, ours):
        (ll_m, _), (ll_n, _) = s["resps"][0][0], s["resps"][1][0]
        max_diff = max(max_diff, abs(ll_m - r["logprob_matching"]), abs(ll_n - r["logprob_not_matching"]))
        assert bool(s["acc"]) == r["prefers_matching"]
    assert max_diff < 1e-4, max_diff
    assert res["results"]["ai_risk_local"]["acc,none"] == pytest.approx(
        sum(r["prefers_matching"] for r in ours) / len(ours))
