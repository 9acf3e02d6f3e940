"""The Gemini judge under the faults the documents stage is tested with: the real google-genai
SDK against the misbehaving loopback server, kills at random moments, configuration errors,
and a cache that keeps every reply (items 1-4 of the fault-tolerance issue, judge side)."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doctune.io import read_jsonl, write_jsonl
from harness.gemini_loopback import Cut, LoopbackGemini, Raw, default_responder, ok_reply, prompt_text

pytest.importorskip("google.genai")
REPO = Path(__file__).resolve().parents[1]
CANARY = "canary-JUDGE-KEY-93d1"
MARKS = ("[[SAFETY]]", "[[EMPTY]]", "[[MAXTOK]]", "[[RECITATION]]", "[[NOSCHEMA]]")
AHB = {"kind": "ahb", "source": {"path": str(REPO / "resources/fixtures/ahb")}, "judge_format": "json"}


def judge_responder(body, seen):
    """Markers in the judged completion select failure modes; otherwise a schema-conforming verdict."""
    p = prompt_text(body)
    status, reply, *rest = default_responder(body, seen)
    if status != 200 or isinstance(reply, (Raw, Cut)) or any(m in p for m in MARKS):
        return (status, reply, *rest)
    return 200, ok_reply(json.dumps({"reasoning": "considered", "score": len(p) % 2}), p)


SCORABLE = ("0", "1", "2", "4")   # fixture questions with valid tags


def completions(path, ks, text="An answer that mentions welfare."):
    """Completion k answers question SCORABLE[k % 4] in epoch k // 4."""
    write_jsonl(path, [{"id": SCORABLE[k % 4], "epoch": k // 4, "prompt": f"question {k}",
                        "completion": text(k) if callable(text) else text} for k in ks])
    return str(path)


CHILD = r"""
import json, sys, types
from doctune.evaluation.judging import judge_completions
from doctune.workflow.pipeline import run
a = json.loads(sys.argv[1])
sm = types.SimpleNamespace(rule="judge", input=[a["completions"]], output=[a["out"], a["report"]], log=[],
                           params=types.SimpleNamespace(items=lambda: {}.items()))
run(sm, lambda: judge_completions(a["completions"], "ahb", a["bench"], a["judges"], a["out"], a["cache"],
                                  report=a["report"]))
"""


def child_args(tmp_path, srv, comp, **judge):
    a = {"completions": comp, "out": str(tmp_path / "scores.jsonl"), "report": str(tmp_path / "scores.report.json"),
         "cache": str(tmp_path / "cache" / "judge.jsonl"), "bench": AHB,
         "judges": {"gem": {"backend": "gemini", "model": "gemini-judge", "base_url": srv.url, "concurrency": 3,
                            "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "parse_retries": 1,
                            "temperature": 0.0, "price_in_per_mtok": 0.1, "price_out_per_mtok": 0.4, **judge}}}
    return [sys.executable, "-c", CHILD, json.dumps(a)], a


ENV = {"GEMINI_API_KEY": CANARY, "PYTHONPATH": str(REPO / "src")}


def test_gemini_judge_faults_by_kind_and_rejections_are_null_never_zero(tmp_path):
    texts = {0: "fine", 1: "[[SAFETY]]", 2: "[[NOSCHEMA]]", 3: "[[MAXTOK]]", 4: "[[FAILmalformedx1]]",
             5: "[[FAIL503rax1]]", 6: "[[FAILdropx1]]"}
    comp = completions(tmp_path / "c.jsonl", range(7), text=lambda i: texts[i])
    with LoopbackGemini(responder=judge_responder, faults={"429": 0.1, "5xx": 0.05}, fault_seed=2) as srv:
        args, a = child_args(tmp_path, srv, comp)
        p = subprocess.run(args, env={**os.environ, **ENV}, capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()[-3000:]
        served, injected = srv.total, sum(srv.fault_counts.values())
    rows = read_jsonl(a["out"])
    by_item: dict = {}
    for r in rows:
        k = SCORABLE.index(str(r["item_id"])) + 4 * int(r["epoch"])
        by_item.setdefault(k, []).append(r["score"])
    for i in (0, 4, 5, 6):                  # faults retried: every unit has a verdict
        assert all(s in (0, 1) for s in by_item[i]), (i, by_item[i])
    for i in (1, 2, 3):                     # rejections: stored as null after parse_retries, never 0
        assert all(s is None for s in by_item[i]), (i, by_item[i])
    rep = json.loads(Path(a["report"]).read_text())["by_judge"]["gem"]
    kinds = rep["api"]["replies_by_kind"]
    assert kinds["safety"] >= 2 and kinds["schema"] >= 2 and kinds["max_tokens"] >= 2   # asked twice each
    assert kinds["malformed"] >= 1 and kinds["http_5xx"] >= 1 and kinds["transport"] >= 1
    assert rep["api"]["requests_sent"] == served and rep["api"]["in_flight_at_kill"] == 0
    assert rep["api"]["retries"] == sum(v for k, v in kinds.items()
                                        if k in ("http_429", "http_5xx", "malformed", "transport"))
    assert injected <= rep["api"]["retries"] and rep["estimated_cost_usd"] > 0
    assert rep["null"] == sum(s is None for s in (x for v in by_item.values() for x in v))


def test_gemini_judge_killed_and_rerun_pays_once_and_reports_every_run(tmp_path):
    comp = completions(tmp_path / "c.jsonl", range(7), text=lambda i: f"answer {i} about welfare")
    env = {**os.environ, **ENV}
    rng = random.Random(4)
    cache = tmp_path / "cache" / "judge.gem.jsonl"
    with LoopbackGemini(responder=judge_responder, latency_s=0.05,
                        faults={"malformed": 0.05, "429": 0.15, "5xx": 0.05}, fault_seed=9) as srv:
        args, a = child_args(tmp_path, srv, comp)
        kills = 0
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
            before = len(read_jsonl(cache, tolerate_torn_tail=True)) if cache.exists() else 0
            p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            target = before + rng.randint(2, 5)
            deadline = time.time() + 60
            while time.time() < deadline and p.poll() is None and \
                    (not cache.exists() or len(read_jsonl(cache, tolerate_torn_tail=True)) < target):
                time.sleep(0.005)
            assert p.poll() is None, p.communicate()[1].decode()[-2000:]
            time.sleep(rng.random() * 0.05)
            p.send_signal(sig)
            p.communicate()
            kills += 1
            assert not Path(a["out"]).exists() and not Path(a["report"]).exists()
        p = subprocess.run(args, env=env, capture_output=True, timeout=120)
        assert p.returncode == 0, p.stderr.decode()[-3000:]
        repeats = sum(c - 1 for c in srv.request_counts.values())
        injected, served, distinct = sum(srv.fault_counts.values()), srv.total, len(srv.request_counts)
    conc = 3
    assert repeats <= injected + conc * kills                    # nothing paid twice but in-flight ones
    rep = json.loads(Path(a["report"]).read_text())["by_judge"]["gem"]
    api = rep["api"]
    assert api["runs"] == kills + 1 and api["in_flight_at_kill"] <= conc * kills
    assert api["requests_sent"] - api["in_flight_at_kill"] <= served <= api["requests_sent"]
    ok = api["replies_by_kind"]["ok"]                            # every distinct request answered once
    assert ok <= distinct <= ok + api["in_flight_at_kill"]       # (stored as a kill landed: in flight)
    assert rep["null"] == 0 and all(r["score"] in (0, 1) for r in read_jsonl(a["out"]))
    assert rep["tokens_in"] > 0 and rep["estimated_cost_usd"] > 0


@pytest.mark.parametrize("server", [{"mode": "bad_key"}, {"mode": "unauthenticated"}, {"mode": "quota_day"},
                                    {"models": {"another-model"}}])
def test_gemini_judge_configuration_error_stops_in_one_line(tmp_path, server):
    comp = completions(tmp_path / "c.jsonl", range(7))
    with LoopbackGemini(responder=judge_responder, latency_s=0.01, **server) as srv:
        args, a = child_args(tmp_path, srv, comp)
        p = subprocess.run(args, env={**os.environ, **ENV}, capture_output=True, timeout=60)
        assert srv.total <= 3
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err and CANARY not in err + p.stdout.decode()
    lines = [ln for ln in err.splitlines() if "Gemini API:" in ln]
    assert len(lines) == 1 and "rule judge stopped" in lines[0]
    assert "GEMINI_API_KEY" in lines[0] or "model 'gemini-judge'" in lines[0]
    assert not Path(a["out"]).exists() and not Path(a["report"]).exists()


def test_gemini_judge_more_completions_asks_no_kept_verdict_again(tmp_path):
    env = {**os.environ, **ENV}
    with LoopbackGemini(responder=judge_responder) as srv:
        args, a = child_args(tmp_path, srv, completions(tmp_path / "c.jsonl", range(3)))
        assert subprocess.run(args, env=env, capture_output=True, timeout=60).returncode == 0
        before = dict(srv.request_counts)
        args, a = child_args(tmp_path, srv, completions(tmp_path / "c.jsonl", range(7)))
        assert subprocess.run(args, env=env, capture_output=True, timeout=60).returncode == 0
    assert all(srv.request_counts[k] == 1 for k in before)        # kept verdicts came from the cache
    assert len(srv.request_counts) > len(before)
