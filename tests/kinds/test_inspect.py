"""The `inspect` benchmark kind: inspect_evals tasks (ANIMA, MORU, TAC) run offline on the tiny model
(base, and base + a live LoRA adapter) with Inspect's mockllm grader and the project's small local
datasets in each task's layout; numbers checked against Inspect's own log."""
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai")
pytest.importorskip("inspect_evals")

from doctune.evaluation.kinds import get_kind  # noqa: E402
from doctune.evaluation.kinds.inspect import check_config, run_inspect_task  # noqa: E402
from doctune.io import read_json  # noqa: E402

FIX = Path(__file__).resolve().parents[2] / "resources" / "fixtures" / "inspect"
GEN = {"max_new_tokens": 8, "temperature": 1.0, "top_p": 1.0, "seed": 0}
GRADER = {"model": "mockllm/model", "outputs": ["GRADE: C", "GRADE: I", "GRADE: C"]}
# with an unparseable reply among them (MORU drops such grades; ANIMA 0.26.0's scorer raises
# KeyError when all grades of one dimension of a sample are unparseable and another's are not)
GRADER_WITH_BAD = {"model": "mockllm/model", "outputs": ["GRADE: C", "GRADE: I", "GRADE: C", "no grade here"]}

# A chat template that shows tools to the model (as Llama 3.1 / Qwen 2.5 templates do), for the tiny model.
TOOL_TEMPLATE = (
    "{% if tools %}<|system|>\nYou may call these tools by replying <tool_call>{\"name\": ..., \"arguments\": ...}"
    "</tool_call>:\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}<|end|>\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@pytest.fixture(scope="module")
def lora_spec(tiny_model_dir, tmp_path_factory):
    """The tiny model plus a LoRA adapter with non-zero weights, kept live (merge: false)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from doctune.models import base_spec

    out = tmp_path_factory.mktemp("adapter")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    torch.manual_seed(0)
    peft.save_pretrained(out)
    spec = base_spec("doc", {"path": str(tiny_model_dir), "dtype": "float32"})
    spec["adapters"] = [{"path": str(out), "merge": False}]
    return spec


def _cfg(task, **kw):
    return {"kind": "inspect", "task": task, "_name": task.split("/")[-1], **kw}


def test_anima_on_tiny_model_matches_inspect_log(tmp_path, tiny_spec):
    from inspect_ai.log import read_eval_log

    cfg = _cfg("inspect_evals/anima", task_args={"dataset_repo_id": str(FIX / "anima"), "dataset_revision": "local"},
               grader_models=[GRADER], epochs=2)
    out, log_file = tmp_path / "anima.json", tmp_path / "anima.eval"
    doc = run_inspect_task(tiny_spec, cfg, str(out), str(log_file), model_name="base", gen=GEN)
    assert doc["status"] == "ok", doc["reason"]
    assert doc["sample_errors"] == []
    log = read_eval_log(str(log_file))
    # every fixture question whose tags all name a dimension (exact case, as the reference requires), x 2 epochs
    n_q = len(log.eval.dataset.sample_ids)
    assert n_q >= 2 and len(log.samples) == len(doc["samples"]) == 2 * n_q
    assert log.eval.model == "doctune/base"
    inspect_metrics = {k: m.value for k, m in log.results.scores[0].metrics.items()}
    assert doc["metrics"] == pytest.approx(inspect_metrics)
    # metrics file: the value is Inspect's; per-item scores are the epoch means of each sample's "overall"
    kind = get_kind("inspect")
    metrics, items, extra = kind.metrics(kind.read_scores(str(out)), cfg, 200, 0)
    assert "reason" not in extra
    assert metrics["overall_mean"]["value"] == pytest.approx(inspect_metrics["overall_mean"])
    per = {}
    for s in log.samples:
        v = s.scores["anima_scorer"].value
        if isinstance(v, dict) and not math.isnan(v["overall"]):
            per.setdefault(str(s.id), []).append(v["overall"])
    assert items["overall_mean"] == pytest.approx({k: sum(v) / len(v) for k, v in per.items()})
    assert metrics["overall_mean"]["ci_low"] is not None or len(per) < 2
    assert kind.default_primary(kind.read_scores(str(out))) == "overall_mean"
    # the completeness audit: the samples Inspect planned (after limit) x epochs, all scored
    assert doc["n_samples"] == n_q and kind.plan(cfg, doc)["n_planned"] == 2 * n_q
    assert kind.scored_units(doc, cfg) == 2 * n_q
    # the generation budget reached Inspect
    assert all(s.output.usage.output_tokens <= 8 for s in log.samples)


def test_moru_on_post_trained_model_with_live_adapter(tmp_path, lora_spec):
    from peft import PeftModel

    from doctune.evaluation.kinds.inspect.provider import get_inspect_model

    m = get_inspect_model("doc", lora_spec)
    assert isinstance(m.api.model, PeftModel)  # served with the adapter, not merged
    cfg = _cfg("inspect_evals/moru", grader_models=[GRADER_WITH_BAD], epochs=1,
               task_args={"dataset_repo_id": str(FIX / "moru"), "dataset_revision": "local",
                          "dimensions_repo_id": str(FIX / "moru_dimensions"), "dimensions_revision": "local"})
    doc = run_inspect_task(lora_spec, cfg, str(tmp_path / "m.json"), str(tmp_path / "m.eval"), model_name="doc",
                           gen=GEN, model=m)
    assert doc["status"] == "ok", doc["reason"]
    # 5 rows, one exact duplicate dropped by the reference loader: 4 samples (id_language)
    assert sorted(s["id"] for s in doc["samples"]) == ["1_en", "1_ms", "2_en", "3_hi"]
    assert doc["graders"] == ["mockllm/model"]


def test_refused_without_grader_before_anything_runs(tmp_path, tiny_spec, monkeypatch):
    cfg = _cfg("inspect_evals/moru")
    errs = check_config(cfg, "moru")
    assert errs and "grader_models" in errs[0] and "grade itself" in errs[0]
    assert get_kind("inspect").check(cfg) == errs
    import doctune.evaluation.kinds.inspect.provider as prov

    monkeypatch.setattr(prov, "get_inspect_model", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(ValueError, match="grader_models"):
        run_inspect_task(tiny_spec, cfg, str(tmp_path / "x.json"), str(tmp_path / "x.eval"))
    assert not (tmp_path / "x.json").exists()
    # a graded task cannot be declared program-scored
    with pytest.raises(ValueError, match="needs_grader: false is wrong"):
        run_inspect_task(tiny_spec, _cfg("inspect_evals/moru", needs_grader=False), str(tmp_path / "y.json"),
                         str(tmp_path / "y.eval"))
    # unknown task args and unknown tasks are config errors, not missing data
    with pytest.raises(ValueError, match="no argument"):
        run_inspect_task(tiny_spec, _cfg("inspect_evals/tac", needs_grader=False, task_args={"revison": "x"}),
                         str(tmp_path / "z.json"), str(tmp_path / "z.eval"))
    with pytest.raises(ValueError, match="not registered"):
        run_inspect_task(tiny_spec, _cfg("inspect_evals/nope", needs_grader=False), str(tmp_path / "z.json"),
                         str(tmp_path / "z.eval"))


def test_gated_tac_is_missing_with_clear_reason(tmp_path, tiny_spec, monkeypatch):
    from inspect_ai.log import read_eval_log

    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError

    url = "https://huggingface.co/datasets/CompassioninMachineLearning/tac/resolve/x/scenarios.json"

    def gated(*a, **k):  # what the hub answers a user who has not accepted TAC's terms
        raise GatedRepoError("Access to dataset CompassioninMachineLearning/tac is restricted. You must have "
                             "access to it and be authenticated to access it. Please log in.",
                             response=httpx2.Response(401, request=httpx2.Request("GET", url)))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    monkeypatch.delenv("TAC_LOCAL_SCENARIOS", raising=False)
    cfg = _cfg("inspect_evals/tac", needs_grader=False)
    out, log_file = tmp_path / "tac.json", tmp_path / "tac.eval"
    doc = run_inspect_task(tiny_spec, cfg, str(out), str(log_file), model_name="base", gen=GEN)
    assert doc["status"] == "missing" and "gated" in doc["reason"] and "local_scenarios" in doc["reason"]
    log = read_eval_log(str(log_file))
    assert log.status == "error" and "gated" in log.error.message
    kind = get_kind("inspect")
    metrics, items, extra = kind.metrics(kind.read_scores(str(out)), cfg, 10, 0)
    assert metrics == {} and items == {} and "gated" in extra["reason"]


def test_tac_tool_calls_through_the_chat_template(tmp_path, tiny_spec):
    from inspect_ai.model import ChatMessageUser
    from inspect_evals.tac.tools import purchase_tickets, search_experiences

    from doctune.evaluation.kinds.inspect.provider import get_inspect_model, template_renders_tools

    # the tiny model's own template ignores tools: such a model cannot call them
    plain = get_inspect_model("base", tiny_spec)
    assert template_renders_tools(plain.api.tokenizer) is False
    spec = json.loads(json.dumps(tiny_spec))
    spec["base"]["chat_template"] = TOOL_TEMPLATE
    m = get_inspect_model("base", spec)
    assert template_renders_tools(m.api.tokenizer) is True
    from inspect_ai.tool import ToolInfo
    from inspect_ai.tool._tool_def import ToolDef

    tools = [ToolDef(t()).as_tool_info() if hasattr(ToolDef(t()), "as_tool_info") else ToolInfo(
        name=ToolDef(t()).name, description=ToolDef(t()).description, parameters=ToolDef(t()).parameters)
        for t in (search_experiences, purchase_tickets)]
    prompt = m.api.hf_chat([ChatMessageUser(content="Book 2 tickets in Orlando.")], tools)
    assert "search_experiences" in prompt and "purchase_tickets" in prompt and "experience_id" in prompt
    # and a TAC run (one scenario variant) completes through that template, scored by the task's program
    cfg = _cfg("inspect_evals/tac", needs_grader=False, epochs=1, max_items=2,
               task_args={"local_scenarios": str(FIX / "tac" / "scenarios.json")})
    doc = run_inspect_task(spec, cfg, str(tmp_path / "t.json"), str(tmp_path / "t.eval"), model_name="base",
                           gen=GEN, model=m)
    assert doc["status"] == "ok", doc["reason"]
    assert len(doc["samples"]) == 2 and {"welfare_rate", "completion_rate"} <= set(doc["metrics"])
    assert doc["chat_template_renders_tools"] is True
    for s in doc["samples"]:
        v = s["scores"]["tac_scorer"]
        assert set(v) == {"welfare", "completed"}


@pytest.mark.slow
def test_pipeline_runs_inspect_tasks_per_model_into_metrics_and_comparisons(tmp_path):
    """Rule inspect_task per model x task on the demo config (+ MORU with the mock grader and TAC from
    its local scenarios): logs under results/inspect, metrics files, and a paired comparison."""
    import yaml

    from doctune.analysis.stats import compute_comparisons
    from test_e2e_demo import copy_repo, smk

    work = copy_repo(tmp_path)
    cfg = yaml.safe_load((work / "config/tiny.yaml").read_text())
    cfg["benchmarks"] = {
        "moru": {"kind": "inspect", "task": "inspect_evals/moru", "epochs": 2,
                 "grader_models": [GRADER],  # (with an unparseable grade, MORU 0.26.0 cannot reduce epochs)
                 "task_args": {"dataset_repo_id": "resources/fixtures/inspect/moru", "dataset_revision": "local",
                               "dimensions_repo_id": "resources/fixtures/inspect/moru_dimensions",
                               "dimensions_revision": "local"}},
        "tac": {"kind": "inspect", "task": "inspect_evals/tac", "needs_grader": False, "epochs": 1, "max_items": 2,
                "task_args": {"local_scenarios": "resources/fixtures/inspect/tac/scenarios.json"}},
    }
    cfg["evaluation"]["generation"]["max_new_tokens"] = 8
    cfg["run_name"] = "inspect"
    (work / "config/inspect.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    targets = [f"results/metrics/{m}/{b}.json" for m in ("base", "doc") for b in ("moru", "tac")]
    smk(work, *targets, "--configfile", "config/inspect.yaml", "-c2")
    work = work / "runs" / "inspect"
    for m in ("base", "doc"):
        for b in ("moru", "tac"):
            assert (work / f"results/inspect/{m}/{b}.eval").is_file()
            assert (work / f"results/logs/inspect_task/{m}/{b}.log").is_file()
            doc = read_json(work / f"results/metrics/{m}/{b}.json")
            assert doc["status"] == "ok" and doc["kind"] == "inspect", doc.get("reason")
            assert doc["primary_metric"] in doc["metrics"]
    moru = read_json(work / "results/metrics/doc/moru.json")
    summary = read_json(work / "results/inspect/doc/moru.json")
    assert doc_metric_matches(moru, summary)
    rows = compute_comparisons([{"a": "doc", "b": "base"}],
                               {m: {"moru": str(work / f"results/metrics/{m}/moru.json")} for m in ("doc", "base")},
                               {"n_bootstrap": 50, "n_permutations": 50})
    row = next(r for r in rows if r["metric"] == moru["primary_metric"])
    assert row["test"].startswith("paired") and row["n"] == len(moru["items"][moru["primary_metric"]])


def doc_metric_matches(metrics_doc, summary):
    """Every metric value in our metrics file is Inspect's own number from the task's log."""
    return all(metrics_doc["metrics"][k]["value"] == pytest.approx(v) for k, v in summary["metrics"].items()
               if v is not None)


def test_a_task_whose_data_fails_otherwise_stops_the_job(tmp_path, tiny_spec, monkeypatch):
    """Only data that cannot be had right now (gated, offline, unreachable) is missing: any other
    failure while the task loads its data stops the job with its message."""
    import huggingface_hub

    from doctune.io import DatasetError

    def broken(*a, **k):
        raise ValueError('Unknown split "tset". Should be one of [\'train\'].')

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    monkeypatch.delenv("TAC_LOCAL_SCENARIOS", raising=False)
    with pytest.raises(DatasetError, match="Unknown split"):
        run_inspect_task(tiny_spec, _cfg("inspect_evals/tac", needs_grader=False), str(tmp_path / "t.json"),
                         str(tmp_path / "t.eval"), model_name="base", gen=GEN)
    assert not (tmp_path / "t.json").exists()
