"""doctune plan (doctune.workflow.plan): the MDE formula against a simulation, the API cost against
a real run's ledger on the loopback Gemini server, the CLI on the tiny and the paper configs, a
pilot's measurements, and the dry-run hook. Cheap: a few seconds in all."""
import json
import math
import re
import socket
from pathlib import Path

import numpy as np
import pytest

from doctune.workflow.config import load_yaml, resolve_backend, validate_config
from doctune.workflow.plan import build_plan, comparison_rows, format_plan, mde, t_quantile

REPO = Path(__file__).resolve().parents[1]


def _config(name: str) -> dict:
    return validate_config(load_yaml((REPO / "config" / name).read_text()))


# ------------------------------------------------------------------------------------ the MDE

def test_t_quantile_matches_scipy():
    from scipy.special import stdtrit

    for df in (1, 2, 4, 25, 779):
        for p in (0.8, 0.975, 0.995):
            assert t_quantile(p, df) == pytest.approx(float(stdtrit(df, p)), rel=1e-7)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, abs=1e-6)


@pytest.mark.parametrize("items,epochs", [(26, 1), (10, 1), (26, 30)])
def test_mde_gives_80_percent_power_in_a_simulation(items, epochs):
    """Paired data simulated with a known per-unit SD and a true difference equal to the MDE:
    a paired t-test on the per-item scores (epochs averaged, as the comparisons test them)
    rejects in ~80% of 4,000 replications (Monte-Carlo SE 0.6 points)."""
    from scipy import stats

    sd_unit, alpha, reps = 0.5, 0.05, 4000
    delta = mde(sd_unit, items * epochs, items, alpha, 0.8)
    rng = np.random.default_rng(12345)
    # per unit (item x epoch) differences, independent: the per-item mean has SD sd/sqrt(epochs)
    d = rng.normal(delta, sd_unit, size=(reps, items, epochs)).mean(axis=2)
    t = d.mean(axis=1) / (d.std(axis=1, ddof=1) / math.sqrt(items))
    p = 2 * stats.t.sf(np.abs(t), items - 1)
    power = float((p < alpha).mean())
    assert power == pytest.approx(0.80, abs=0.025), (items, epochs, delta, power)
    # the normal approximation (z quantiles) falls short at small n: why the plan uses t
    if items == 10:
        z = (1.959964 + 0.841621) * sd_unit / math.sqrt(items)
        dz = rng.normal(z, sd_unit, size=(reps, items))
        tz = dz.mean(axis=1) / (dz.std(axis=1, ddof=1) / math.sqrt(items))
        assert float((2 * stats.t.sf(np.abs(tz), items - 1) < alpha).mean()) < 0.75   # exact: 0.70


# ------------------------------------------------------------------ API cost against a ledger

def _words_as_asked(body, seen):
    """A loopback model that writes the length the prompt asks for ("about N words"), with the
    corpus's key phrases in it (harness.gemini_loopback.default_text; the loopback counts one
    output token per word and a prompt token per 4 characters)."""
    from harness.gemini_loopback import default_text, ok_reply, prompt_text

    p = prompt_text(body)
    n = int(re.search(r"about (\d+) words", p).group(1))
    seed = (body.get("generationConfig") or {}).get("seed")
    text = default_text(f"{p}|seed={seed}", n_words=n - 17)     # default_text adds 17 words around the body
    assert len(text.split()) == n
    return 200, ok_reply(text, p)


def test_plan_api_cost_equals_the_ledger_of_a_real_run(tmp_path, monkeypatch):
    """Real document generation (google-genai against the loopback server) for a small corpus;
    the plan of the same config (the one the run used) predicts requests, tokens and cost of the
    run's API ledger within 5%."""
    pytest.importorskip("google.genai")
    from doctune.documents import generate_documents, load_corpus_def, write_specs
    from doctune.documents.corpus import apply_run_settings
    from harness.gemini_loopback import LoopbackGemini

    monkeypatch.setenv("DOCTUNE_TEST_PLAN_KEY", "test-key")
    with LoopbackGemini(responder=_words_as_asked) as srv:
        raw = {
            "run_name": "plan_ledger", "resources_dir": str(REPO / "resources"),
            "base_models": {"base": {"path": "results/base_models/base", "build_tiny": True}},
            "generators": {"gemini": {"backend": "gemini", "model": "gemini-test", "api_key_env": "DOCTUNE_TEST_PLAN_KEY",
                                      "base_url": srv.url, "concurrency": 8, "backoff_initial_s": 0.01,
                                      "price_in_per_mtok": 0.10, "price_out_per_mtok": 0.40}},
            "corpora": {"animal_welfare": {"n": 12, "generator": "gemini", "seed": 1}},
            # the paper's validation: the corpus asks for 1,800 words
            "validation": {"min_words": 1200, "max_words": 3500, "require_key_phrases": 1,
                           "near_duplicate_threshold": 0.8, "max_attempts": 3},
            "arms": {"doc": {"method": "doc", "corpus": "animal_welfare", "base_model": "base"}},
            "benchmarks": {"welfare_probe": {"kind": "probe", "corpus": "animal_welfare",
                                             "source": {"path": str(REPO / "resources/probes/animal_welfare.jsonl")}}},
            # what the plan must assume about this generator: the loopback counts one token per
            # word, and its replies pass validation (no regeneration; checked below)
            "plan": {"tokens_per_word": 1.0, "regeneration_rate": 0.0},
        }
        cfg = validate_config(raw)
        plan = build_plan(cfg)
        ccfg = cfg["corpora"]["animal_welfare"]
        specs = tmp_path / "specs.jsonl"
        write_specs("animal_welfare", ccfg, cfg["resources_dir"], str(specs))
        cdef = apply_run_settings(load_corpus_def(cfg["resources_dir"], "animal_welfare"), ccfg)
        rep = generate_documents(str(specs), str(tmp_path / "docs.jsonl"), str(tmp_path / "docs.report.json"),
                                 resolve_backend(cfg, cfg["generators"]["gemini"]), cfg["validation"], cdef,
                                 str(tmp_path / "cache.jsonl"))
    assert rep["generated"] == 12 and rep["regenerations"] == 0       # the plan's allowance held
    ledger = [json.loads(x) for x in (tmp_path / "cache.jsonl.ledger.jsonl").read_text().splitlines()]
    replies = [e for e in ledger if e["ev"] == "reply"]
    spent_in, spent_out = sum(e["in"] for e in replies), sum(e["out"] for e in replies)
    assert (spent_in, spent_out) == (rep["api"]["tokens_in"], rep["api"]["tokens_out"])
    row = next(r for r in plan["api"] if r["stage"] == "documents")
    assert row["requests"] == pytest.approx(rep["api"]["requests_sent"], rel=0.05)
    assert row["tokens_in"] == pytest.approx(spent_in, rel=0.05)
    assert row["tokens_out"] == pytest.approx(spent_out, rel=0.05)
    assert row["cost_usd"] == pytest.approx(rep["estimated_cost_usd"], rel=0.05)
    assert plan["totals"]["cost_usd"] == pytest.approx(rep["estimated_cost_usd"], rel=0.05)


def test_unknown_prices_are_reported_missing_never_zero():
    cfg = _config("config.yaml")
    cfg["generators"]["gemini"]["price_in_per_mtok"] = None
    plan = build_plan(cfg)
    docs = [r for r in plan["api"] if r["stage"] == "documents"]
    assert docs and all(r["cost_usd"] is None for r in docs)
    assert any("documents" in m for m in plan["totals"]["cost_missing"])
    assert "missing:" in format_plan(plan)


# ------------------------------------------------------------------------------------ the CLI

def test_cli_plan_tiny_prints_every_section(monkeypatch, capsys):
    from doctune.cli import main

    monkeypatch.chdir(REPO)
    assert main(["plan", "config/tiny.yaml"]) == 0
    out = capsys.readouterr().out
    for section in ("== API requests, tokens and cost ==", "== GPU-hours", "== Minimum detectable difference"):
        assert section in out
    for stage in ("documents", "instruct data", "judge", "judge gate", "training", "post-training", "evaluation",
                  "manipulation_check:own"):
        assert re.search(rf"^{re.escape(stage)}\s", out, re.M), stage
    assert "assumed:" in out


def test_cli_plan_paper_prints_the_ahb_mde_offline(monkeypatch, capsys):
    """config/config.yaml: the AHB's 26 questions x 30 epochs with the default SD assumption; no
    network (every socket connection fails)."""
    from doctune.cli import main

    def no_network(*a, **k):
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.chdir(REPO)
    assert main(["plan", "config/config.yaml"]) == 0
    out = capsys.readouterr().out
    want = mde(0.5, 26 * 30, 26, 0.05, 0.8)
    assert want == pytest.approx((t_quantile(0.975, 25) + t_quantile(0.8, 25)) * 0.5 / math.sqrt(780))
    line = next(ln for ln in out.splitlines() if re.match(r"doc_vs_control\s+doc_base - control.*\sahb\s", ln))
    assert re.search(rf"\s26\s+30\s+1\s+780\s+0\.5\s+{want:.3g}\s", line), line
    assert "assumed: plan.sd.default" in line
    assert main(["plan", "config/config.yaml", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    ahb = [r for r in plan["power"] if r["benchmark"] == "ahb"]
    assert ahb and all((r["items"], r["epochs"], r["n"], r["sd"]) == (26, 30, 780, 0.5) for r in ahb)
    assert ahb[0]["mde"] == pytest.approx(want)
    assert ahb[0]["mde_items_only"] == pytest.approx(mde(0.5, 26, 26))
    assert plan["totals"]["cost_usd"] > 0 and not plan["totals"]["cost_missing"]
    judge = next(r for r in plan["api"] if r["what"] == "ahb by gemini_judge")
    assert judge["requests"] == 17 * 26 * 30          # models x items x units (assumed 1) x epochs


@pytest.mark.parametrize("name", ["tiny.yaml", "config.yaml", "demo.yaml"])
def test_comparison_rows_are_those_of_the_stats_stage(name):
    from doctune.analysis.stats import expand_comparisons
    from doctune.workflow.config import all_models, posttrain_sizes

    cfg = _config(name)
    assert comparison_rows(cfg) == expand_comparisons(cfg["stats"]["comparisons"], all_models(cfg),
                                                      list(cfg["benchmarks"]), posttrain_sizes(cfg))


# ------------------------------------------------------------------------------------ a pilot

def test_a_pilot_replaces_the_assumptions_it_measures(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = _config("tiny.yaml")
    res = tmp_path / "pilot" / "results"
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.05, 0.1, 40)
    for model, shift in (("doc", diffs), ("control", np.zeros(40))):
        d = res / "metrics" / model
        d.mkdir(parents=True)
        (d / "welfare_probe.json").write_text(json.dumps({
            "kind": "probe", "primary_metric": "margin",
            "items": {"margin": {f"i{k}": float(0.2 + shift[k]) for k in range(40)}}}))
    (res / "models" / "doc").mkdir(parents=True)
    (res / "models" / "doc" / "train_metrics.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "tokens_per_s": 1234.0}) for s in range(5)) + "\n")
    (res / "benchmarks" / "score_logprob").mkdir(parents=True)
    (res / "benchmarks" / "score_logprob" / "doc.tsv").write_text("s\th:m:s\n8.0\t0:00:08\n")
    plan = build_plan(cfg, tmp_path / "pilot")
    row = next(r for r in plan["power"] if r["family"] == "manipulation_check:own")
    assert row["sd_source"].startswith("measured: pilot")
    assert row["sd"] == pytest.approx(float(np.std(diffs, ddof=1)))
    assert row["mde"] == pytest.approx(mde(row["sd"], row["items"], row["items"]))
    train = [r for r in plan["gpu"] if r["stage"] == "training"]
    assert train and all("1,234 tokens/s (measured: pilot" in r["rate"] for r in train)
    score = next(r for r in plan["gpu"] if r["what"] == "score_logprob")
    assert "measured: pilot" in score["rate"] and "0.2 s per unit" in score["rate"]   # 8 s over 40 items
    other = next(r for r in plan["power"] if r["benchmark"] == "ahb")
    assert other["sd_source"].startswith("assumed")            # nothing measured there


# ------------------------------------------------------------------------- the dry-run hook

def test_the_plan_is_printed_at_the_end_of_a_dry_run_only(monkeypatch, capsys):
    import atexit

    from doctune.workflow import plan as P

    handlers = []
    monkeypatch.setattr(atexit, "register", handlers.append)
    cfg = _config("tiny.yaml")

    class Workflow:
        dryrun = False

    for dry in (False, True):
        Workflow.dryrun = dry
        P.print_after_dry_run(Workflow, cfg, REPO)
        handlers.pop()()
        err = capsys.readouterr().err
        assert ("== Minimum detectable difference" in err) is dry
    P.print_after_dry_run(Workflow, {**cfg, "plan": {**cfg["plan"], "dry_run": False}}, REPO)
    assert handlers == []                                         # plan.dry_run: false registers nothing
