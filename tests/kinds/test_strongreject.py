"""StrongREJECT: our rubric prompt, parser and score formulas against inspect_evals' strong_reject
scorer and metrics on the same judge replies; the source as a local path, a URL and a dataset id."""
import asyncio
import http.server
import shutil
import threading

import pytest

from doctune.evaluation.judging import judge_completions
from doctune.evaluation.kinds import get_kind
from doctune.evaluation.kinds.common import BenchmarkUnavailable
from doctune.evaluation.kinds.strongreject import parse_scores, strongreject_score
from doctune.evaluation.metrics import compute_metrics
from doctune.io import DataError, read_jsonl, write_jsonl
from doctune.llm.base import FINISH_STOP, GenResult

REPLIES = [
    "#overall_reasoning x\n#scores\n1.a r\n1.b 1\n2.a r\n2.b 5\n3.a r\n3.b 5",
    "#overall_reasoning x\n#scores\n1.a r\n1.b 0\n2.a r\n2.b 4\n3.a r\n3.b 2",
    "#overall_reasoning x\n#scores\n1.a r\n1.b 0\n2.a r\n2.b 1\n3.a r\n3.b 1",
    "#overall_reasoning x\n#scores\n1.a r\n1.b 0\n2.a r\n2.b 5\n3.a r\n3.b 5\n",
    "#scores\n1.b 0\n2.b 3\n3.b 4",                                   # bare
    "#scores 1.b 0 then 2.b 2 and 3.b 3 inline",
    "1.b 0\n2.b 3\n3.b 4",                                            # no #scores
    "#scores\n1.b 0\n2.b 6\n3.b 4",                                   # out of range
    "#scores\n1.b 2\n2.b 3\n3.b 4",                                   # refusal out of range
    "#scores\n1.b 0\n2.b 0\n3.b 4",
    "#scores\n1.b 0\n2.b 3",                                          # 3.b missing
    "#scores\n1.b yes\n2.b 3\n3.b 4",
    "#scores\n1.b 0\n2.b 03\n3.b 4",
    "1.b 1 early\n#scores\n1.b 0\n2.b 2\n3.b 2",                       # numbers before #scores ignored
    "#scores\n3.b 4\n1.b 0\n2.b 3\n3.b 5",                            # order after #scores
    "#scores\n1.b 0\n2.b 3\n3.b 4\n#scores\n1.b 1\n2.b 1\n3.b 1",     # the first block counts
    "#scores\n1.b 0\n2.b 12\n3.b 4",
    "", "no scores here",
]


def _ref_scores(reply):
    from inspect_evals.strong_reject.utils import get_scores_from_eval_response

    d = get_scores_from_eval_response(reply)
    return {"refused": d["refusal"], "convincing": d["convincingness"], "specific": d["specificity"]} if d else None


@pytest.mark.parametrize("reply", REPLIES)
def test_parser_matches_inspect_evals(reply):
    pytest.importorskip("inspect_evals.strong_reject")
    assert parse_scores(reply) == _ref_scores(reply)


class Replies:
    model_id = "table"

    def __init__(self, table):
        self.table, self.requests = table, []

    def generate(self, requests, progress=None, on_result=None):
        self.requests += requests
        return [GenResult(key=r.key, text=self.table[r.messages[-1]["content"]], finish_reason=FINISH_STOP)
                for r in requests]

    def close(self):
        pass


def test_prompt_and_metrics_match_inspect_evals(tmp_path, repo_root, monkeypatch):
    """The same items, answers and judge replies through inspect_evals' strong_reject_scorer (run
    with an Inspect mockllm judge) and its metrics, and through ours."""
    pytest.importorskip("inspect_evals.strong_reject")
    import inspect_ai.model._model as m
    from inspect_ai.model import ChatMessageUser, ModelOutput, get_model
    from inspect_ai.scorer import SampleScore, Target
    from inspect_ai.solver import TaskState
    from inspect_evals.strong_reject.scorer import jailbreak_rate, strong_reject_metric, strong_reject_scorer

    monkeypatch.setattr(m, "count_text_tokens", lambda text: max(1, len(text) // 4))
    cfg = {"kind": "strongreject", "source": {"path": str(repo_root / "resources/fixtures/strongreject_small.csv")},
           "judge_format": "reference", "prompt_source": "inspect_evals"}
    items = get_kind("strongreject").load(cfg).items
    answers = {it["id"]: f"Answer to {it['id']}." for it in items}
    write_jsonl(tmp_path / "c.jsonl", [{"id": it["id"], "epoch": 0, "prompt": it["prompt"],
                                        "completion": answers[it["id"]]} for it in items])
    # reference: one judge call per item through the scorer; the reply is looked up by item
    reply_of = {it["id"]: REPLIES[i % len(REPLIES)] for i, it in enumerate(items)}
    ref_prompts, sample_scores = {}, []
    for it in items:
        def judge(input, tools, tool_choice, config, _id=it["id"]):  # noqa: A002
            ref_prompts[_id] = input[-1].text
            return ModelOutput.from_content(model="mockllm/model", content=reply_of[_id])

        state = TaskState(model="mockllm/model", sample_id=it["id"], epoch=1, input=it["prompt"],
                          messages=[ChatMessageUser(content=it["prompt"])],
                          output=ModelOutput.from_content(model="mockllm/model", content=answers[it["id"]]))
        scorer = strong_reject_scorer(get_model("mockllm/model", custom_outputs=judge, memoize=False))
        sample_scores.append(SampleScore(score=asyncio.run(scorer(state, Target("N/A"))), sample_id=it["id"]))
    # ours, with the judge answering the same reply to the same prompt text
    fake = Replies({ref_prompts[i]: reply_of[i] for i in ref_prompts})
    judge_completions(str(tmp_path / "c.jsonl"), "sr", cfg, {"j": {"parse_retries": 0}}, str(tmp_path / "s.jsonl"),
                      None, backends={"j": fake})
    assert [r.messages[-1]["content"] for r in fake.requests] == [ref_prompts[it["id"]] for it in items]
    assert all(len(r.messages) == 1 for r in fake.requests)      # inspect_evals sends no system message
    rows = {r["item_id"]: r for r in read_jsonl(tmp_path / "s.jsonl")}
    for s in sample_scores:
        ours = rows[s.sample_id]
        if isinstance(s.score.value, dict):
            v = s.score.value
            assert ours["fields"] == {"refused": v["refusal"], "convincing": v["convincingness"],
                                      "specific": v["specificity"]}
            assert ours["score"] == strongreject_score(v["refusal"], v["convincingness"], v["specificity"])
        else:
            assert ours["score"] is None and ours["unparseable"]
    res = compute_metrics("m", "sr", cfg, str(tmp_path / "s.jsonl"), str(tmp_path / "m.json"), n_bootstrap=10)
    assert res["metrics"]["score_inspect"]["value"] == pytest.approx(strong_reject_metric()(sample_scores), abs=1e-12)
    assert res["metrics"]["jailbreak_rate"]["value"] == pytest.approx(jailbreak_rate()(sample_scores), abs=1e-12)
    assert res["metrics"]["n_unparseable"]["value"] == sum(not isinstance(s.score.value, dict) for s in sample_scores)


def test_builtin_rubric_has_system_prompt_and_parses(tmp_path, repo_root):
    cfg = {"kind": "strongreject", "source": {"path": str(repo_root / "resources/fixtures/strongreject_small.csv")},
           "prompt_source": "builtin", "max_items": 2}
    write_jsonl(tmp_path / "c.jsonl", [{"id": i, "epoch": 0, "prompt": "p", "completion": "a"} for i in ("0", "1")])

    class Any:
        model_id = "x"
        requests = []

        def generate(self, requests, progress=None, on_result=None):
            self.requests += requests
            return [GenResult(key=r.key, text=REPLIES[1], finish_reason=FINISH_STOP) for r in requests]

        def close(self):
            pass

    fake = Any()
    judge_completions(str(tmp_path / "c.jsonl"), "sr", cfg, {"j": {}}, str(tmp_path / "s.jsonl"), None,
                      backends={"j": fake})
    msgs = fake.requests[0].messages
    assert msgs[0]["role"] == "system" and "#scores" in msgs[1]["content"] and "1.b" in msgs[1]["content"]
    assert all(r["score"] == pytest.approx(4 / 8) for r in read_jsonl(tmp_path / "s.jsonl"))


def test_source_path_url_and_dataset(tmp_path, repo_root, monkeypatch):
    csv = repo_root / "resources/fixtures/strongreject_small.csv"
    by_path = get_kind("strongreject").load({"source": {"path": str(csv)}}).items
    # a URL (the paper config's form): served on loopback, downloaded once into the cache
    monkeypatch.setenv("DOCTUNE_CACHE", str(tmp_path / "cache"))
    serve = tmp_path / "www"
    serve.mkdir()
    shutil.copy(csv, serve / "strongreject_dataset.csv")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(serve), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/strongreject_dataset.csv"
        by_url = get_kind("strongreject").load({"source": {"path": url}}).items
        with pytest.raises(BenchmarkUnavailable, match="could not download.*404"):   # the server says 404
            get_kind("strongreject").load({"source": {"path": url.replace(".csv", "-gone.csv")}})
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert by_url == by_path and len(by_url) == 8 and "\n" in by_url[6]["prompt"]
    assert get_kind("strongreject").load({"source": {"path": url}}).items == by_path   # from the cache now
    with pytest.raises(BenchmarkUnavailable, match="could not download"):   # nothing listens any more
        get_kind("strongreject").load({"source": {"path": url.replace(".csv", "-gone2.csv")}})
    assert get_kind("strongreject").data_files({"source": {"path": url}}) == []
    # a dataset id (datasets.load_dataset; a local dataset folder stands in for the hub)
    ds = tmp_path / "sr-dataset"
    ds.mkdir()
    shutil.copy(csv, ds / "train.csv")
    by_id = get_kind("strongreject").load({"source": {"dataset": str(ds)}}).items
    assert by_id == by_path
    with pytest.raises(DataError, match="forbidden_prompt"):
        (ds / "train.csv").write_text("a,b\n1,2\n")
        shutil.rmtree(tmp_path / "hf", ignore_errors=True)
        get_kind("strongreject").load({"source": {"dataset": str(ds)}})
