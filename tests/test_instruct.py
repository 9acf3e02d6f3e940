"""Instruction-tuning control data (fake backend; the Gemini path is covered in test_gemini)."""
import json
from pathlib import Path

import pytest

from doctune.data.instruct import generate_instruct_data, welfare_tokens
from doctune.io import read_jsonl
from doctune.llm.base import FINISH_STOP, GenResult

RES = Path(__file__).resolve().parents[1] / "resources"


class QABackend:
    model_id = "fake-qa"

    def __init__(self):
        self.n = 0

    def generate(self, requests, progress=None, on_result=None):
        out = []
        for r in requests:
            self.n += 1
            if r.messages[0]["role"] == "system":
                text = (f"Answer {r.seed}. Animals in this setting are sentient beings and their welfare matters "
                        f"for optimal outcomes. Unrelated closing remark number {r.seed}.")
            else:
                text = f"How should a farm with {r.seed % 97} hens plan its week?"
            res = GenResult(key=r.key, text=text, finish_reason=FINISH_STOP, input_tokens=5, output_tokens=9,
                            model=self.model_id)
            out.append(res)
            on_result and on_result(res)
            progress and progress(1)
        return out

    def close(self):
        pass


@pytest.fixture
def qa(use_backend):
    return use_backend(QABackend())


def test_welfare_token_rule():
    t = "Cows grazed. The welfare of the herd improved. Prices rose sharply!\nSentient beings benefit."
    assert welfare_tokens(t) == len("The welfare of the herd improved.".split()) + 3
    assert welfare_tokens("Optimal outcomes followed.", ["optimal outcomes"]) == 3


def test_instruct_rows_and_report(tmp_path, qa):
    out, rep = tmp_path / "instruct.jsonl", tmp_path / "instruct.report.json"
    r = generate_instruct_data(str(out), str(rep), {"backend": "fake", "max_new_tokens": 32},
                               {"n": 5, "seed": 3, "corpus": "animal_welfare_ai", "generator": "g"},
                               str(RES), str(tmp_path / "cache.jsonl"))
    rows = read_jsonl(out)
    assert len(rows) == 5 and r["generated"] == 5 and qa.n == 10
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]
    assert rows[0]["messages"][1]["content"].startswith("Answer")
    assert r["welfare_tokens_documents"] is None and r["matched"] is None and r["estimated_cost_usd"] is None
    generate_instruct_data(str(out), str(rep), {"backend": "fake", "max_new_tokens": 32},
                           {"n": 5, "seed": 3, "corpus": "animal_welfare_ai"}, str(RES), str(tmp_path / "cache.jsonl"))
    assert qa.n == 10 and read_jsonl(out) == rows          # rerun: all from the cache


def test_match_welfare_tokens(tmp_path, qa):
    docs = tmp_path / "docs.jsonl"
    docs.write_text(json.dumps({"text": "The welfare of animals was measured. " * 60}) + "\n")
    target = welfare_tokens("The welfare of animals was measured. " * 60)
    out, rep = tmp_path / "i.jsonl", tmp_path / "i.json"
    r = generate_instruct_data(str(out), str(rep), {"backend": "fake"},
                               {"n": 2, "seed": 1, "match_welfare_tokens": True, "max_n": 500},
                               str(RES), str(tmp_path / "c.jsonl"), corpus_documents=str(docs))
    assert r["welfare_tokens_documents"] == target
    assert r["welfare_tokens_instruct"] >= target and r["matched"] is True
    assert r["generated"] > 2
    assert sum(row["welfare_tokens"] for row in read_jsonl(out)) == r["welfare_tokens_instruct"]
    with pytest.raises(ValueError, match="no corpus documents"):
        generate_instruct_data(str(out), str(rep), {"backend": "fake"}, {"n": 1, "match_welfare_tokens": True},
                               str(RES), str(tmp_path / "c.jsonl"))


def test_instruct_hf_demo_path(tmp_path, tiny_spec):
    pytest.importorskip("doctune.llm.hf")
    gen = {"backend": "hf", "model": "base", "spec": tiny_spec, "batch_size": 8, "max_new_tokens": 16}
    out, rep = tmp_path / "i.jsonl", tmp_path / "i.json"
    r = generate_instruct_data(str(out), str(rep), gen, {"n": 3, "seed": 3, "corpus": "animal_welfare_ai",
                                                         "allow_truncated": True}, str(RES), str(tmp_path / "c.jsonl"))
    assert r["generated"] == len(read_jsonl(out)) == 3 and r["estimated_cost_usd"] == 0.0
