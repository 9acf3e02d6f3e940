"""AHB/ANIMA scored by the reference code and by ours must agree.

The same completions (two epochs that differ), the same dimensions and a deterministic grader (a
verdict that is a function of the judge prompt's text, some of them unparseable) go through
inspect_evals' own ANIMA scorer and metrics, run by Inspect itself (``inspect_ai.eval`` with
``mockllm`` graders and Inspect's mean epoch reducer), and through ``judge_completions`` +
``compute_metrics``. Per-question scores, overall_mean, dimension_normalized_avg and every
per-dimension average must be identical (to float rounding), on our fixture and on the real 115
questions when ../shared/benchmarks is present. Our judge prompts must equal the prompts the
reference scorer sent, unit for unit.
"""
import hashlib
import json

import pytest

inspect_ai = pytest.importorskip("inspect_ai")
pytest.importorskip("inspect_evals.anima")

from inspect_ai import Task, eval as inspect_eval  # noqa: E402
from inspect_ai.dataset import MemoryDataset  # noqa: E402
from inspect_ai.model import ModelOutput, get_model  # noqa: E402
from inspect_ai.solver import solver  # noqa: E402
from inspect_evals.anima.dataset import record_to_sample  # noqa: E402
from inspect_evals.anima.metrics import avg_by_dimension, dimension_normalized_avg, overall_mean  # noqa: E402
from inspect_evals.anima.scorer import anima_scorer  # noqa: E402
from inspect_evals.anima.types import AnimaDimension  # noqa: E402

from doctune.evaluation.judging import judge_completions  # noqa: E402
from doctune.evaluation.kinds import get_kind  # noqa: E402
from doctune.evaluation.kinds.ahb import parse_grade, source_rows  # noqa: E402
from doctune.evaluation.metrics import compute_metrics  # noqa: E402
from doctune.io import read_jsonl, write_jsonl  # noqa: E402
from doctune.llm.base import FINISH_STOP, GenResult  # noqa: E402

EPOCHS = 2
TOL = 1e-12


@pytest.fixture(autouse=True)
def offline_token_counts(monkeypatch):
    """Inspect estimates token counts with tiktoken, which downloads its encoding; offline, a
    rough count does (it only feeds context-compaction triggers, never a score)."""
    import inspect_ai.model._model as m

    monkeypatch.setattr(m, "count_text_tokens", lambda text: max(1, len(text) // 4))


UNPARSEABLE_OK: set = set()   # (question, guiding question) pairs whose grade may be unparseable


def verdict(prompt: str) -> str:
    """A fixed verdict table keyed by the judge prompt's text: C or I, and no grade for about a
    third of the units in UNPARSEABLE_OK (variable sets after a dimension's first: the reference
    crashes - KeyError in _generate_explanation - when every grade of a dimension is unparseable)."""
    h = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
    if h % 3 == 0 and any(q in prompt and g in prompt for q, g in UNPARSEABLE_OK):
        return "I am not able to grade this."
    return "The submission ... reasoning.\nGRADE: " + ("C" if h % 5 > 1 else "I")


class TableJudge:
    """Our side of the grader: the same table, recording every prompt."""

    model_id = "table"

    def __init__(self):
        self.prompts = []

    def generate(self, requests, progress=None, on_result=None):
        out = []
        for r in requests:
            p = r.messages[-1]["content"]
            self.prompts.append(p)
            res = GenResult(key=r.key, text=verdict(p), finish_reason=FINISH_STOP, model="table")
            out.append(res)
        return out

    def close(self):
        pass


def answer(qid: str, epoch: int) -> str:
    return f"Answer {epoch} to question {qid}: " + ("animals matter; " * (int(qid) % 4 + epoch))


def run_reference(source: dict, tmp_path, revision: str):
    """inspect_evals' ANIMA scorer + metrics on the same data, through Inspect's eval()."""
    dim_rows, _ = source_rows(source, "dimensions")
    dims = [AnimaDimension(name=r["dimension"], weight=r.get("default_weighting", 1.0),
                           scoring_description=r["scoring"], guiding_question=r["guiding_question"],
                           indicators=r.get("observable_indicators", "")) for r in dim_rows]
    by_name = {d.name: d for d in dims}
    q_rows, _ = source_rows(source, "questions")
    convert = record_to_sample(by_name.keys())
    samples = []
    for r in q_rows:
        s = convert({k: v for k, v in r.items() if k != "_where"})
        samples += s if isinstance(s, list) else [s]
    sent = []

    def grade(input, tools, tool_choice, config):  # noqa: A002 - Inspect's callable signature
        text = input[-1].text
        sent.append(text)
        return ModelOutput.from_content(model="mockllm/model", content=verdict(text))

    grader = get_model("mockllm/model", custom_outputs=grade, memoize=False)

    @solver
    def canned():
        async def solve(state, generate):
            state.output = ModelOutput.from_content(model="mockllm/model",
                                                    content=answer(str(state.sample_id), state.epoch - 1))
            state.messages.append(state.output.message)
            return state
        return solve

    task = Task(dataset=MemoryDataset(samples), solver=canned(),
                scorer=anima_scorer(dimensions=by_name, revision=revision, grader_models=[grader]),
                metrics=[overall_mean(), dimension_normalized_avg(by_name), avg_by_dimension()],
                epochs=EPOCHS)
    [log] = inspect_eval(task, model="mockllm/model", log_dir=str(tmp_path / "inspect-logs"), display="none",
                         max_samples=64, max_connections=64, fail_on_error=True)
    assert log.status == "success", log.error
    metrics = {k: v.value for k, v in log.results.scores[0].metrics.items()}
    per_sample = {str(s.sample_id): s.value for s in log.reductions[0].samples}
    return metrics, per_sample, sent, samples


def run_ours(source: dict, sample_ids, tmp_path, revision: str):
    cfg = {"kind": "ahb", "source": source, "judge_format": "reference", "prompt_source": "inspect_evals",
           "revision_label": revision}
    data = get_kind("ahb").load(cfg)
    qtext = {q["id"]: q["question"] for q in data.items}
    assert sorted(qtext) == sorted(sample_ids)        # the same questions survive both loaders
    write_jsonl(tmp_path / "c.jsonl", [{"id": q, "epoch": e, "prompt": qtext[q], "completion": answer(q, e)}
                                       for q in qtext for e in range(EPOCHS)])
    judge = TableJudge()
    summary = judge_completions(str(tmp_path / "c.jsonl"), "ahb", cfg, {"t": {"parse_retries": 0}},
                                str(tmp_path / "s.jsonl"), None, backends={"t": judge})
    res = compute_metrics("m", "ahb", cfg, str(tmp_path / "s.jsonl"), str(tmp_path / "m.json"), n_bootstrap=10)
    return res, judge.prompts, summary


def cross_check(source: dict, tmp_path, revision="test-rev"):
    kind = get_kind("ahb")
    cfg = {"kind": "ahb", "source": source}
    data = kind.load(cfg)
    units = kind.units(data, [{"id": q["id"], "epoch": 0, "prompt": q["question"], "completion": "x", "_line": 1}
                              for q in data.items], cfg)
    UNPARSEABLE_OK.clear()
    UNPARSEABLE_OK.update((u["question"], u["guiding_question"]) for u in units if u["vset"] > 0)
    ref_metrics, ref_samples, ref_prompts, samples = run_reference(source, tmp_path, revision)
    res, our_prompts, summary = run_ours(source, [str(s.id) for s in samples], tmp_path, revision)
    # 1. the judge prompts are the reference's, unit for unit
    assert sorted(our_prompts) == sorted(ref_prompts)
    assert summary["units"] == len(ref_prompts)
    # 2. per-question scores
    ours = res["items"]["overall_mean"]
    ref_q = {k: v["overall"] for k, v in ref_samples.items() if isinstance(v, dict)}
    assert set(ours) == {k for k, v in ref_q.items() if v == v}       # NaN = unscored in both
    diffs = [abs(ours[k] - ref_q[k]) for k in ours]
    # 3. overall_mean, dimension_normalized_avg, per-dimension averages
    diffs.append(abs(res["metrics"]["overall_mean"]["value"] - ref_metrics["overall_mean"]))
    diffs.append(abs(res["metrics"]["dimension_normalized_avg"]["value"] - ref_metrics["dimension_normalized_avg"]))
    dim_metrics = {k[len("dimension:"):]: v["value"] for k, v in res["metrics"].items() if k.startswith("dimension:")}
    for d, v in dim_metrics.items():
        diffs.append(abs(v - ref_metrics[d]))
    assert max(diffs) <= TOL, max(diffs)
    n_unparseable = sum(1 for r in read_jsonl(tmp_path / "s.jsonl") if r["unparseable"])
    assert n_unparseable > 0                      # the excluded-grade path was exercised
    return {"questions": len(ours), "units": summary["units"], "max_abs_diff": max(diffs),
            "unparseable": n_unparseable}


def test_cross_check_fixture(repo_root, tmp_path):
    out = cross_check({"path": str(repo_root / "resources/fixtures/ahb")}, tmp_path)
    assert out["questions"] == 5


def test_cross_check_real_115(shared_benchmarks, tmp_path):
    if not (shared_benchmarks / "ahb" / "questions.jsonl").is_file():
        pytest.skip("real AHB files absent")
    out = cross_check({"path": str(shared_benchmarks / "ahb")}, tmp_path)
    print("cross-check real AHB:", json.dumps(out))
    assert out["questions"] == 114


REPLIES = [
    "GRADE: C", "GRADE: I", "grade: c", "GRADE:C", "GRADE : I", "GRADE: Correct", "GRADE: incorrect",
    "GRADE: P", "GRADE: Partial", "GRADE: CI", "GRADE: X", "GRADE:", "no grade at all", "",
    "First GRADE: C then at the end GRADE: I", "GRADE: I ... on reflection GRADE: C.", "downgrade: C",
    "GRADE:\u200b C", "GRADE: C\nextra words after", "**GRADE: C**", "GRADE: Ç", "Final GRADE: I\n",
    "GRADES: C", "XGRADE: C", "GRADE\n:\nI",
]


@pytest.mark.parametrize("reply", REPLIES)
def test_grade_parser_matches_model_graded_qa(reply):
    """Our parser gives the grade Inspect's model_graded_qa (default instructions) gives."""
    import asyncio

    from inspect_ai.model import ChatMessageUser
    from inspect_ai.scorer import Target, model_graded_qa, value_to_float
    from inspect_ai.solver import TaskState

    grader = get_model("mockllm/model", custom_outputs=[ModelOutput.from_content(model="mockllm/model",
                                                                                 content=reply)])
    state = TaskState(model="mockllm/model", sample_id=0, epoch=1, input="Q", messages=[ChatMessageUser(content="Q")],
                      output=ModelOutput.from_content(model="mockllm/model", content="A"))
    score = asyncio.run(model_graded_qa(model=grader)(state, Target("crit")))
    ref = value_to_float()(score.value)
    ours = parse_grade(reply)
    assert (ours is None) == (ref != ref), (reply, ref, ours)
    if ours is not None:
        assert ours == ref
