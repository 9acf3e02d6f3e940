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
from doctune.llm.gemini import GeminiBackend, MissingAPIKeyError, check_api_key
from doctune.llm.gemini_loopback import LoopbackGemini, default_responder, ok_reply, prompt_text

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
            return 400, {"error": {"code": 400, "message": f"API key {CANARY} not valid", "status": "INVALID_ARGUMENT"}}
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
    assert got["[[BAD400]]"] == ("error", 1)                      # 400 is not retried
    assert got["[[FAIL500x99]] y"] == ("error", 4)                # max_retries 3, then gives up
    assert sorted(seen) == sorted(str(i) for i in range(len(prompts)))
    assert srv.keys_seen == {CANARY}                               # the key was sent in the header ...
    text = repr(b) + str(b.__dict__) + json.dumps([r.to_dict() for r in res])
    assert CANARY not in text                                      # ... and appears nowhere else
    assert "not valid" in res[-1].error


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


def test_cached_backend_reuses_replies(tmp_path, key_env):
    with LoopbackGemini() as srv:
        c = CachedBackend(GeminiBackend(cfg(srv, key_env)), tmp_path / "cache.jsonl")
        reqs = [req("a", "one"), req("b", "two"), req("c", "one"), req("d", "[[SAFETY]]")]
        r1 = c.generate(reqs)
        assert srv.total == 3                                  # duplicate prompt sent once
        assert r1[0].text == r1[2].text and [r.key for r in r1] == ["a", "b", "c", "d"]
        c.close()
        c = CachedBackend(GeminiBackend(cfg(srv, key_env)), tmp_path / "cache.jsonl")
        r2 = c.generate(reqs)
        assert srv.total == 4                                  # only the failed (safety) one again
        assert [r.text for r in r2[:3]] == [r.text for r in r1[:3]] and r2[0].cached
        c.generate([req("e", "one", seed=1)])                  # other settings: another key
        assert srv.total == 5
        c.close()
    assert CANARY not in (tmp_path / "cache.jsonl").read_text()


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
import json, sys
from doctune.documents import generate_documents
generate_documents(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]),
                   {"min_words": 5, "near_duplicate_threshold": 0.95, "max_attempts": 2}, None, sys.argv[5])
"""


def test_kill_and_rerun_loses_no_reply_and_repeats_none(tmp_path):
    n = 40
    specs = tmp_path / "specs.jsonl"
    specs.write_text("".join(json.dumps({"id": f"k-{i}", "corpus": "k", "institution": "I", "domain": "D",
                                         "doc_type": "T", "reasoning": "R", "seed": i,
                                         "prompt": f"Write document number {i}."}) + "\n" for i in range(n)))
    out, rep, cache = tmp_path / "docs.jsonl", tmp_path / "docs.report.json", tmp_path / "cache.jsonl"
    env = {**os.environ, "GEMINI_API_KEY": CANARY, "PYTHONPATH": str(REPO / "src")}
    with LoopbackGemini(latency_s=0.05) as srv:
        gen = json.dumps({"backend": "gemini", "model": "gemini-test", "base_url": srv.url, "concurrency": 2})
        args = [sys.executable, "-c", CHILD, str(specs), str(out), str(rep), gen, str(cache)]
        p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and (not cache.exists() or cache.read_text().count("\n") < 8):
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        out1, err1 = p.communicate()
        served_at_kill = srv.total
        stored_at_kill = len(read_jsonl(cache, tolerate_torn_tail=True))
        assert 8 <= stored_at_kill < n and not out.exists()
        p2 = subprocess.run(args, env=env, capture_output=True, timeout=120)
        assert p2.returncode == 0, p2.stderr.decode()[-2000:]
        # the rerun requested exactly the replies that were not stored before the kill
        assert srv.total - served_at_kill == n - stored_at_kill
        # no prompt was requested twice, except ones in flight at the kill (at most `concurrency`)
        assert sum(c - 1 for c in srv.counts.values()) <= 2
        assert len(srv.counts) == n
    docs = read_jsonl(out)
    assert [d["id"] for d in docs] == [f"k-{i}" for i in range(n)]
    assert json.loads(rep.read_text())["generated"] == n
    blob = b"".join([out1, err1, p2.stdout, p2.stderr]).decode(errors="replace")
    blob += "".join(f.read_text(errors="replace") for f in tmp_path.rglob("*") if f.is_file())
    assert CANARY not in blob
    assert "documents k" in p2.stderr.decode()                 # tqdm progress on stderr
