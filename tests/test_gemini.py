"""Gemini backend on the real google-genai SDK against a loopback HTTP server (no SDK patching)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from doctune.io import read_jsonl
from doctune.llm.base import GenRequest
from doctune.llm.cache import CachedBackend
from doctune.llm.gemini import APIConfigError, GeminiBackend, MissingAPIKeyError, check_api_key
from harness.gemini_loopback import LoopbackGemini, default_responder, ok_reply, prompt_text, quota_body

CANARY = "canary-SECRET-7f3a9c"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("DOCTUNE_TEST_GEMINI_KEY", CANARY)
    return "DOCTUNE_TEST_GEMINI_KEY"


def cfg(srv, key_env, **kw):
    return {"backend": "gemini", "model": "gemini-test", "api_key_env": key_env, "base_url": srv.url,
            "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "max_retries": 3, "timeout_s": 10, **kw}


def req(key, text, **kw):
    return GenRequest(key=key, messages=[{"role": "user", "content": text}], max_new_tokens=64, **kw)


def test_missing_key_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("SOME_UNSET_KEY_VAR", raising=False)
    with pytest.raises(MissingAPIKeyError, match="SOME_UNSET_KEY_VAR"):
        check_api_key({"backend": "gemini", "model": "m", "api_key_env": "SOME_UNSET_KEY_VAR"})
    with pytest.raises(MissingAPIKeyError, match="SOME_UNSET_KEY_VAR"):
        GeminiBackend({"model": "m", "api_key_env": "SOME_UNSET_KEY_VAR"})
    check_api_key({"backend": "hf"})  # other backends need no key


def test_finish_reasons_retries_and_key_never_leaks(key_env):
    def responder(body, seen):
        if "[[ECHO]]" in prompt_text(body):   # a provider error message that quotes the key
            return 400, {"error": {"code": 400, "message": f"bad field {CANARY} in request", "status": "INVALID_ARGUMENT"}}
        return default_responder(body, seen)

    with LoopbackGemini(responder=responder) as srv:
        b = GeminiBackend(cfg(srv, key_env))
        prompts = ["hello", "[[SAFETY]]", "[[EMPTY]]", "[[MAXTOK]]", "[[FAIL500x2]] x", "[[BAD400]]",
                   "[[FAIL500x99]] y", "[[ECHO]]"]
        seen = []
        res = b.generate([req(str(i), p) for i, p in enumerate(prompts)], on_result=lambda r: seen.append(r.key))
    got = {p: (r.finish_reason, r.attempts) for p, r in zip(prompts, res)}
    assert got["hello"] == ("stop", 1) and res[0].ok and res[0].input_tokens > 0 and res[0].output_tokens > 0
    assert got["[[SAFETY]]"][0] == "safety" and not res[1].ok
    assert got["[[EMPTY]]"][0] == "empty"
    assert got["[[MAXTOK]]"][0] == "length" and not res[3].ok
    assert got["[[FAIL500x2]] x"] == ("stop", 3)                  # retried twice on 500
    assert got["[[BAD400]]"] == ("error", 1)                      # a 400 about the request is not retried
    assert got["[[FAIL500x99]] y"] == ("error", 4)                # max_retries 3, then gives up
    assert sorted(seen) == sorted(str(i) for i in range(len(prompts)))
    assert srv.keys_seen == {CANARY}                               # the key was sent in the header ...
    text = repr(b) + str(b.__dict__) + json.dumps([r.to_dict() for r in res])
    assert CANARY not in text                                      # ... and appears nowhere else
    assert "bad field ***" in res[-1].error


SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}


def test_every_bad_reply_is_retried_or_rejected_by_kind_and_spares_the_others(key_env):
    """Each way a reply can be bad, all in one call: retried (transport, 408/429/5xx, cut-off or
    non-JSON 200) or returned as a rejection (empty, SAFETY, RECITATION, MAX_TOKENS, schema
    ignored, 400), counted by kind; no fault takes down the requests in flight beside it."""
    cases = {  # prompt -> (finish reason, attempts, kinds counted for it)
        "plain": ("stop", 1, {"ok": 1}),
        "[[FAILdropx1]] a": ("stop", 2, {"transport": 1, "ok": 1}),
        "[[FAIL408x1]] b": ("stop", 2, {"http_408": 1, "ok": 1}),
        "[[FAIL429x2]] c": ("stop", 3, {"http_429": 2, "ok": 1}),
        "[[FAIL500x1]] d": ("stop", 2, {"http_5xx": 1, "ok": 1}),
        "[[FAIL503x1]] e": ("stop", 2, {"http_5xx": 1, "ok": 1}),
        "[[FAILmalformedx2]] f": ("stop", 3, {"malformed": 2, "ok": 1}),
        "[[FAILnotjsonx1]] g": ("stop", 2, {"malformed": 1, "ok": 1}),
        "[[EMPTY]]": ("empty", 1, {"empty": 1}),
        "[[SAFETY]]": ("safety", 1, {"safety": 1}),
        "[[RECITATION]]": ("safety", 1, {"recitation": 1}),
        "[[MAXTOK]]": ("length", 1, {"max_tokens": 1}),
        "[[BAD400]]": ("error", 1, {"http_4xx": 1}),
        "[[FAILmalformedx9]] h": ("error", 4, {"malformed": 4}),
    }
    with LoopbackGemini(latency_s=0.02) as srv:
        b = GeminiBackend(cfg(srv, key_env, concurrency=len(cases) + 2))
        reqs = [req(str(i), p) for i, p in enumerate(cases)]
        reqs += [req("s1", "[[NOSCHEMA]]", response_schema=SCHEMA), req("s2", "[[JSON]]", response_schema=SCHEMA)]
        res = b.generate(reqs)
        assert srv.max_in_flight >= 8          # the faults really overlapped with other requests
    want_kinds: dict = {"schema": 1, "ok": 1}
    for (p, (fr, attempts, kinds)), r in zip(cases.items(), res):
        assert (r.finish_reason, r.attempts) == (fr, attempts), (p, r)
        for k, v in kinds.items():
            want_kinds[k] = want_kinds.get(k, 0) + v
    assert res[-2].finish_reason == "schema" and "schema" in res[-2].error and not res[-2].ok
    assert res[-1].ok and json.loads(res[-1].text)["score"] == 1
    assert b.stats["by_kind"] == want_kinds
    assert b.stats["requests"] == sum(want_kinds.values()) == srv.total
    assert b.stats["retries"] == sum(v for k, v in want_kinds.items() if k not in
                                     ("ok", "empty", "safety", "recitation", "max_tokens", "schema", "http_4xx")) - 1


def test_retry_after_is_honoured(key_env):
    with LoopbackGemini() as srv:
        b = GeminiBackend(cfg(srv, key_env))                  # backoff at most 0.05 s
        t = time.monotonic()
        assert b.generate([req("a", "[[FAIL429x1]] quick")])[0].ok
        quick = time.monotonic() - t
        for marker in ("[[FAIL429rax1]]", "[[FAIL503rax1]]", "[[FAIL429quotax1]]"):  # wait 1 s, says the server
            t = time.monotonic()
            r = b.generate([req("a", f"{marker} wait")])[0]
            assert r.ok and r.attempts == 2 and time.monotonic() - t >= 1.0
        assert quick < 0.9


@pytest.mark.parametrize("server,what", [
    ({"mode": "bad_key"}, "rejected (API key not valid)"),
    ({"valid_keys": {"another-key"}}, "rejected (API key not valid)"),
    ({"mode": "unauthenticated"}, "not accepted"),
    ({"mode": "permission_denied"}, "permission denied"),
    ({"mode": "quota_day"}, "daily quota"),
    ({"models": {"gemini-other"}}, "model 'gemini-test' is not found"),
])
def test_configuration_errors_stop_everything_at_once(key_env, server, what):
    with LoopbackGemini(latency_s=0.02, **server) as srv:
        b = GeminiBackend(cfg(srv, key_env, concurrency=4))
        with pytest.raises(APIConfigError) as ei:
            b.generate([req(str(i), f"p{i}") for i in range(40)])
        assert srv.total <= 4                                  # no request after the first answer
    msg = str(ei.value)
    assert what in msg and "\n" not in msg and CANARY not in msg
    if "model" not in what:
        assert key_env in msg                                  # names the environment variable
    assert b.stats["by_kind"].get("config_error", 0) >= 1


def test_a_per_minute_quota_429_is_retried_not_fatal(key_env):
    calls = []

    def responder(body, seen):
        calls.append(seen)
        if seen == 0:
            return 429, quota_body("Minute", 0.01)
        return default_responder(body, seen)

    with LoopbackGemini(responder=responder) as srv:
        r = GeminiBackend(cfg(srv, key_env)).generate([req("a", "x")])[0]
    assert r.ok and r.attempts == 2


def test_structured_output_and_system_prompt(key_env):
    bodies = []

    def responder(body, seen):
        bodies.append(body)
        return 200, ok_reply(json.dumps({"score": 1}), prompt_text(body))

    schema = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}
    with LoopbackGemini(responder=responder) as srv:
        b = GeminiBackend(cfg(srv, key_env))
        r = b.generate([GenRequest(key="j", messages=[{"role": "system", "content": "You judge."},
                                                     {"role": "user", "content": "Q"},
                                                     {"role": "assistant", "content": "A"},
                                                     {"role": "user", "content": "Score it"}],
                                   response_schema=schema, seed=5, temperature=0.0)])[0]
    assert json.loads(r.text) == {"score": 1}
    gc = bodies[0]["generationConfig"]
    assert gc["responseMimeType"] == "application/json" and gc["responseJsonSchema"] == schema
    assert gc["seed"] == 5 and gc["temperature"] == 0.0
    assert [c["role"] for c in bodies[0]["contents"]] == ["user", "model", "user"]
    assert "You judge." in json.dumps(bodies[0]["systemInstruction"])


def test_concurrency_bound_and_server_rate_limit_retried(key_env):
    with LoopbackGemini(latency_s=0.05) as srv:
        b = GeminiBackend(cfg(srv, key_env, concurrency=3))
        res = b.generate([req(str(i), f"p{i}") for i in range(12)])
        assert all(r.ok for r in res) and srv.max_in_flight <= 3
    with LoopbackGemini(rpm=120) as srv:   # bucket of 2; the rest get 429 until it refills
        b = GeminiBackend(cfg(srv, key_env, max_retries=30, backoff_initial_s=0.05, backoff_max_s=0.3))
        res = b.generate([req(str(i), f"q{i}") for i in range(5)])
        assert all(r.ok for r in res)
        assert srv.status_counts[429] > 0 and b.stats["retries"] >= srv.status_counts[429]


def test_cached_backend_stores_every_reply_and_retries_only_failures(tmp_path, key_env):
    with LoopbackGemini() as srv:
        c = CachedBackend(GeminiBackend(cfg(srv, key_env)), tmp_path / "cache.jsonl")
        reqs = [req("a", "one"), req("b", "two"), req("c", "one"), req("d", "[[SAFETY]]"),
                req("e", "[[MAXTOK]]"), req("f", "[[FAIL500x4]] gives up")]
        r1 = c.generate(reqs)
        assert srv.total == 5 + 3                              # duplicate prompt sent once; f tried 4 times
        assert r1[0].text == r1[2].text and [r.key for r in r1] == ["a", "b", "c", "d", "e", "f"]
        assert [r.finish_reason for r in r1[3:]] == ["safety", "length", "error"]
        c.close()
        c = CachedBackend(GeminiBackend(cfg(srv, key_env)), tmp_path / "cache.jsonl")
        r2 = c.generate(reqs)
        assert srv.total == 9                                  # only f (no reply yet) again; it succeeds now
        assert [r.text for r in r2[:5]] == [r.text for r in r1[:5]] and all(r.cached for r in r2[:5])
        assert r2[5].ok and not r2[5].cached
        c.generate([req("g", "one", seed=1)])                  # other settings: another key
        assert srv.total == 10
        summary = c.api_summary()
        c.close()
    assert summary["requests_sent"] == 10 and summary["runs"] == 2 and summary["in_flight_at_kill"] == 0
    assert summary["replies_by_kind"] == {"http_5xx": 4, "ok": 4, "safety": 1, "max_tokens": 1}
    assert summary["retries"] == 3                             # f's 4th 500 ended its first call
    assert CANARY not in (tmp_path / "cache.jsonl").read_text()
    assert CANARY not in (tmp_path / "cache.jsonl.ledger.jsonl").read_text()


def test_cache_lock_makes_a_second_process_wait(tmp_path):
    """A rerun started while an orphaned job of a killed run still holds the cache waits for it."""
    code = ("import sys, time; from doctune.llm.cache import _CacheLock; from pathlib import Path; "
            "l = _CacheLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(1.0)")
    lock = tmp_path / "c.jsonl.lock"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.Popen([sys.executable, "-c", code, str(lock)], env=env, stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"held"
    from doctune.llm.cache import _CacheLock

    t = time.monotonic()
    mine = _CacheLock(lock)
    assert time.monotonic() - t > 0.5                          # waited for the other holder to end
    mine.release()
    p.wait(10)


def test_batch_api_resumes_instead_of_resubmitting(tmp_path, key_env):
    with LoopbackGemini(batch_polls_until_done=10**9) as srv:
        conf = cfg(srv, key_env, batch_api=True, batch_poll_s=0.01, batch_max_wait_s=0.2)
        c = CachedBackend(GeminiBackend(conf), tmp_path / "cache.jsonl")
        reqs = [req(str(i), f"batch prompt {i}") for i in range(4)]
        with pytest.raises(TimeoutError, match="rerun to resume"):
            c.generate(reqs)                                   # interrupted while the batch runs
        c.close()
        state = json.loads((tmp_path / "cache.jsonl.batch-state.json").read_text())
        assert [v["name"] for v in state.values()] == ["batches/b1"]
        srv.batch_polls_until_done = 1
        c = CachedBackend(GeminiBackend(conf), tmp_path / "cache.jsonl")
        res = c.generate(reqs)
        c.close()
        assert srv.batch_creates == 1 and all(r.ok for r in res)
        assert [r.key for r in res] == ["0", "1", "2", "3"] and len({r.text for r in res}) == 4
        c = CachedBackend(GeminiBackend(conf), tmp_path / "cache.jsonl")
        c.generate(reqs)                                       # all cached now: no new batch
        c.close()
        assert srv.batch_creates == 1


CHILD = r"""
import json, sys, types
from doctune.documents import generate_documents
from doctune.workflow.pipeline import run
gen = json.loads(sys.argv[4])
sm = types.SimpleNamespace(rule="documents", input=[sys.argv[1]], output=[sys.argv[2], sys.argv[3]], log=[],
                           params=types.SimpleNamespace(items=lambda: {}.items()))
run(sm, lambda: generate_documents(sys.argv[1], sys.argv[2], sys.argv[3], gen,
    {"min_words": 5, "near_duplicate_threshold": 0.95, "max_attempts": 2, "allow_truncated": True}, None,
    sys.argv[5]))
"""


def _specs(path, n, prompt="Write document number {i}."):
    path.write_text("".join(json.dumps({"id": f"k-{i}", "corpus": "k", "institution": "I", "domain": "D",
                                        "doc_type": "T", "reasoning": "R", "seed": i,
                                        "prompt": prompt.format(i=i)}) + "\n" for i in range(n)))


def _child(tmp_path, srv, specs, **gen):
    out, rep, cache = tmp_path / "docs.jsonl", tmp_path / "docs.report.json", tmp_path / "cache.jsonl"
    conf = json.dumps({"backend": "gemini", "model": "gemini-test", "base_url": srv.url, "concurrency": 2,
                       "backoff_initial_s": 0.01, "backoff_max_s": 0.05, **gen})
    return [sys.executable, "-c", CHILD, str(specs), str(out), str(rep), conf, str(cache)], out, rep, cache


ENV = {"GEMINI_API_KEY": CANARY, "PYTHONPATH": str(REPO / "src")}


def test_kill_and_rerun_loses_no_reply_and_repeats_none(tmp_path):
    """SIGKILL and SIGTERM at random moments, under faults; each rerun of the same command goes
    on, no reply is requested twice except ones in flight at a kill (at most `concurrency` per
    kill), and the report adds up every run: requests, retries, kinds, tokens."""
    import random

    n, conc = 60, 2
    specs = tmp_path / "specs.jsonl"
    _specs(specs, n)
    env = {**os.environ, **ENV}
    rng = random.Random(7)
    faults = {"malformed": 0.05, "429": 0.15, "5xx": 0.05}
    with LoopbackGemini(latency_s=0.02, faults=faults, fault_seed=3) as srv:
        args, out, rep, cache = _child(tmp_path, srv, specs, concurrency=conc)
        blobs = []
        kills = 0
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
            before = len(read_jsonl(cache, tolerate_torn_tail=True)) if cache.exists() else 0
            p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            target = before + rng.randint(3, 12)
            deadline = time.time() + 60
            while time.time() < deadline and (not cache.exists() or
                                               len(read_jsonl(cache, tolerate_torn_tail=True)) < target):
                time.sleep(0.005)
            time.sleep(rng.random() * 0.05)                    # any moment, not just after a write
            p.send_signal(sig)
            blobs += list(p.communicate())
            assert p.returncode != 0 and not out.exists()
            kills += 1
        stored = len(read_jsonl(cache, tolerate_torn_tail=True))
        assert stored < n
        p2 = subprocess.run(args, env=env, capture_output=True, timeout=120)
        assert p2.returncode == 0, p2.stderr.decode()[-2000:]
        blobs += [p2.stdout, p2.stderr]
        faults_served = sum(srv.fault_counts.values())
        repeats = sum(c - 1 for c in srv.counts.values())
        # every repeat is a fault's retry or a request in flight at a kill
        assert repeats <= faults_served + conc * kills
        assert len(srv.counts) == n
        served = srv.total
    docs = read_jsonl(out)
    assert [d["id"] for d in docs] == [f"k-{i}" for i in range(n)]
    r = json.loads(rep.read_text())
    api = r["api"]
    assert r["generated"] == n and api["runs"] == kills + 1
    # the ledger saw every request the server saw; ones it sent that never got an answer were
    # in flight at a kill (at most `concurrency` each time)
    assert api["requests_sent"] - api["in_flight_at_kill"] <= served <= api["requests_sent"]
    assert api["in_flight_at_kill"] <= conc * kills
    assert sum(api["replies_by_kind"].values()) == api["requests_sent"] - api["in_flight_at_kill"]
    # every document answered and stored once: the ledger counts a reply when the cache holds it, so
    # one stored just as a kill landed may be counted in flight, never as a second ok
    assert api["replies_by_kind"]["ok"] <= n <= api["replies_by_kind"]["ok"] + api["in_flight_at_kill"]
    assert api["retries"] == sum(v for k, v in api["replies_by_kind"].items() if k != "ok") > 0
    assert r["tokens_out"] == sum(d["output_tokens"] for d in docs)   # only ok replies carry tokens here
    blob = b"".join(blobs).decode(errors="replace")
    blob += "".join(f.read_text(errors="replace") for f in tmp_path.rglob("*") if f.is_file())
    assert CANARY not in blob
    assert "documents k" in p2.stderr.decode()                 # tqdm progress on stderr


@pytest.mark.parametrize("server", [{"mode": "bad_key"}, {"mode": "permission_denied"},
                                    {"mode": "quota_day"}, {"models": {"other"}}])
def test_api_configuration_error_stops_the_rule_in_one_line(tmp_path, server):
    specs = tmp_path / "specs.jsonl"
    _specs(specs, 30)
    with LoopbackGemini(latency_s=0.01, **server) as srv:
        args, out, rep, cache = _child(tmp_path, srv, specs, concurrency=4)
        p = subprocess.run(args, env={**os.environ, **ENV}, capture_output=True, timeout=60)
        assert srv.total <= 4
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "Gemini API:" in ln]
    assert len(lines) == 1 and "rule documents stopped" in lines[0], err
    assert ("GEMINI_API_KEY" in lines[0]) or ("model 'gemini-test'" in lines[0])
    assert not out.exists() and not rep.exists()
    assert CANARY not in err + p.stdout.decode()


def test_growing_the_corpus_requests_no_kept_document_again(tmp_path):
    """Kept documents (truncated ones accepted with allow_truncated included) are cached: growing
    n requests only the new specs."""
    env = {**os.environ, **ENV}
    with LoopbackGemini() as srv:
        specs = tmp_path / "specs.jsonl"
        _specs(specs, 6, prompt="Write document {i}. [[MAXTOK]]")
        args, out, rep, cache = _child(tmp_path, srv, specs)
        assert subprocess.run(args, env=env, capture_output=True, timeout=60).returncode == 0
        first = read_jsonl(out)
        assert len(first) == 6 and {d["finish_reason"] for d in first} == {"length"}
        before = dict(srv.counts)
        _specs(specs, 12, prompt="Write document {i}. [[MAXTOK]]")
        assert subprocess.run(args, env=env, capture_output=True, timeout=60).returncode == 0
        grown = read_jsonl(out)
    assert grown[:6] == first and len(grown) == 12
    assert all(srv.counts[p] == before[p] == 1 for p in before)  # no kept document requested again
    assert len(srv.counts) == 12 and srv.total == 12
