"""Gemini backend (google-genai 3.6.1): async requests with bounded concurrency, requests- and
tokens-per-minute limits, retries with exponential backoff and jitter on 408/429/5xx and
timeouts, finish-reason mapping, structured JSON output, and an optional Batch API mode that
resumes polling a submitted batch after an interruption instead of submitting again.

Config keys (a `generators.<name>` / `judges.<name>` entry with backend: gemini):
    model               str    Gemini model id (required), e.g. gemini-2.5-flash-lite
    api_key_env         str    env var holding the API key (default GEMINI_API_KEY)
    base_url            str    API endpoint override (default: the SDK's; GOOGLE_GEMINI_BASE_URL also works)
    concurrency         int    requests in flight at once (default 32)
    rpm                 number requests per minute, 0 = unlimited (default 0)
    tpm                 number tokens per minute (input estimate + max output), 0 = unlimited (default 0)
    max_retries         int    retries after the first try on 408/429/5xx/timeouts (default 6)
    backoff_initial_s   number first backoff (default 1.0); doubles each retry, jitter x[0.5, 1.5)
    backoff_max_s       number backoff cap (default 60)
    timeout_s           number per-request timeout (default 120)
    temperature, top_p, max_output_tokens    generation defaults read by the callers that build
                                              requests (requests carry the values actually used)
    thinking_budget     int    optional thinking budget (0 turns thinking off on 2.5 models)
    batch_api           bool   use the Batch API (default false)
    batch_poll_s        number poll interval for a submitted batch (default 30)
    batch_max_wait_s    number give up waiting after this long, the batch stays resumable (default 86400)
    price_in_per_mtok   number USD per million input tokens (for cost estimates; default null)
    price_out_per_mtok  number USD per million output tokens (default null)

The API key is read from the environment only and never stored in a file, a log, an exception
message or a repr.

Faults, by kind (each attempt is counted in ``stats["by_kind"]`` and, when a ledger is attached,
in the ledger beside the reply cache, so reports add up over interrupted runs):

* retried with backoff (the longer of the jittered backoff and the server's ``Retry-After``
  header or ``RetryInfo.retryDelay``): transport errors and timeouts (``transport``,
  ``timeout``), HTTP 408/429/5xx (``http_408``, ``http_429``, ``http_5xx``), a 200 whose body is
  cut off or not JSON (``malformed``);
* returned as a rejection, never retried here (the reply is a real answer; callers regenerate
  with a new seed): no candidates (``empty``), SAFETY and other blocks (``safety``),
  RECITATION (``recitation``), MAX_TOKENS (``max_tokens``), a reply that ignores the response
  schema (``schema``), other HTTP 4xx (``http_4xx``);
* configuration errors of the API stop everything at once with ``APIConfigError`` (one line
  naming the problem and the environment variable, never the key): a rejected key (400 "API key
  not valid", 401), permission denied (403), an unknown model (404), the daily quota exhausted
  (429 whose QuotaFailure names a per-day quota).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import atomic_write_json, read_json, stable_hash
from .base import (FINISH_EMPTY, FINISH_ERROR, FINISH_LENGTH, FINISH_SAFETY, FINISH_SCHEMA,
                   FINISH_STOP, GenRequest, GenResult, ProgressFn)

log = logging.getLogger(__name__)



def defaults() -> dict:
    """The backend defaults: config/schema.yaml's backend object."""
    from ..workflow.config import schema_defaults

    return schema_defaults("$defs", "backend")


RETRY_CODES = {408, 429, 500, 502, 503, 504}
SAFETY_REASONS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
                  "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "LANGUAGE"}
RETRY_AFTER_CAP_S = 600.0     # never trust a server's Retry-After beyond ten minutes


class MissingAPIKeyError(RuntimeError):
    user_error = True          # doctune.workflow.pipeline.run prints one line, no traceback


class APIConfigError(RuntimeError):
    """The API refuses the configuration (key, permission, model, daily quota): no request can
    succeed, so the whole job stops at once."""
    user_error = True


def _retry_after_s(exc: Any) -> float | None:
    """Seconds the server asks to wait: the Retry-After header (seconds or an HTTP date) or a
    google.rpc.RetryInfo ``retryDelay`` ("16s") in the error body; None when it says nothing."""
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    val = None
    if headers is not None:
        try:
            val = headers.get("Retry-After") or headers.get("retry-after")
        except Exception:  # noqa: BLE001 - odd header containers
            val = None
    if val:
        try:
            return max(0.0, float(val))
        except ValueError:
            from email.utils import parsedate_to_datetime

            try:
                return max(0.0, parsedate_to_datetime(val).timestamp() - time.time())
            except (TypeError, ValueError):
                pass
    for d in _error_details(exc):
        delay = d.get("retryDelay") if isinstance(d, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                pass
    return None


def _error_details(exc: Any) -> list:
    body = getattr(exc, "details", None)
    err = body.get("error", body) if isinstance(body, dict) else None
    det = err.get("details") if isinstance(err, dict) else None
    return det if isinstance(det, list) else []


def schema_violation(text: str | None, schema: dict) -> str | None:
    """Why `text` does not conform to a JSON schema (the subset Gemini's structured output uses:
    type, properties, required, enum, items), or None when it does."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return "reply is not JSON"

    def check(v: Any, s: dict, where: str) -> str | None:
        t = s.get("type")
        types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
        if t == "integer":
            if not (isinstance(v, int) and not isinstance(v, bool)):
                return f"{where}: expected an integer"
        elif t == "number":
            if not (isinstance(v, (int, float)) and not isinstance(v, bool)):
                return f"{where}: expected a number"
        elif isinstance(t, str) and t in types and not isinstance(v, types[t]):
            return f"{where}: expected {t}"
        if "enum" in s and v not in s["enum"]:
            return f"{where}: {v!r} not in {s['enum']}"
        if isinstance(v, dict):
            for k in s.get("required", []):
                if k not in v:
                    return f"{where}: missing {k!r}"
            for k, sub in (s.get("properties") or {}).items():
                if k in v and isinstance(sub, dict):
                    why = check(v[k], sub, f"{where}.{k}")
                    if why:
                        return why
        if isinstance(v, list) and isinstance(s.get("items"), dict):
            for i, x in enumerate(v):
                why = check(x, s["items"], f"{where}[{i}]")
                if why:
                    return why
        return None

    return check(value, schema, "$")


def check_api_key(cfg: dict) -> None:
    """Raise one clear error, naming the env var, when the Gemini API key is not set.
    Safe to call before any job runs (the Snakefile does)."""
    if cfg.get("backend", "gemini") != "gemini":
        return
    env = cfg.get("api_key_env") or defaults()["api_key_env"]
    if not os.environ.get(env, "").strip():
        raise MissingAPIKeyError(
            f"the Gemini API key is not set: export it in the environment variable {env} "
            f"(config key api_key_env) before running; it is never read from a file")


def _transient_exceptions() -> tuple[type[BaseException], ...]:
    exc: list[type[BaseException]] = [asyncio.TimeoutError, TimeoutError, ConnectionError]
    for mod, names in (("aiohttp", ["ClientError"]), ("httpx", ["TransportError"]),
                       ("httpx2", ["TransportError"])):
        try:
            m = __import__(mod)
            exc += [getattr(m, n) for n in names if hasattr(m, n)]
        except ImportError:
            pass
    return tuple(exc)


class RateLimiter:
    """Token bucket refilled at `per_minute / 60` a second, holding at most one second's worth
    (at least the largest single cost), so traffic is paced evenly rather than in bursts."""

    def __init__(self, per_minute: float):
        self.rate = float(per_minute) / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.t = time.monotonic()
        self.lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
        self.t = now

    async def acquire(self, cost: float = 1.0) -> None:
        if not self.enabled:
            return
        async with self.lock:
            need = min(cost, self.capacity)
            while True:
                self._refill()
                if self.level >= need:
                    self.level -= cost
                    return
                await asyncio.sleep((need - self.level) / self.rate)

    def refund(self, amount: float) -> None:
        if self.enabled:
            self._refill()
            self.level = min(self.capacity, self.level + amount)


class GeminiBackend:
    def __init__(self, cfg: dict, **kw: Any):
        unknown_required = [k for k in ("model",) if not cfg.get(k)]
        if unknown_required:
            raise ValueError(f"gemini backend config: missing key(s) {unknown_required}")
        self.cfg = {**defaults(), **{k: v for k, v in cfg.items() if v is not None}}
        self.model_id = str(self.cfg["model"])
        if float(self.cfg.get("repetition_penalty", 1.0)) != 1.0:
            raise ValueError("gemini backend config: repetition_penalty is not a Gemini setting "
                             "(hf and vllm backends only); remove it or set 1.0")
        for key in ("concurrency", "max_retries"):
            if int(self.cfg[key]) < (1 if key == "concurrency" else 0):
                raise ValueError(f"gemini backend config: {key} must be "
                                 f"{'>= 1' if key == 'concurrency' else '>= 0'}")
        check_api_key({**self.cfg, "backend": "gemini"})
        self._key_env = self.cfg["api_key_env"]
        self.state_path: str | None = kw.get("state_path") or cfg.get("batch_state_path")
        tb = self.cfg.get("thinking_budget")
        self.cache_extra = {"thinking_budget": tb} if tb is not None else None
        self.stats: dict[str, Any] = {"requests": 0, "retries": 0, "by_kind": {}}
        # optional doctune.llm.cache.Ledger: every attempt sent and every reply received (set by
        # CachedBackend), so reports add up over interrupted runs
        self.ledger = None
        self._rng = random.Random()
        self._transient = _transient_exceptions()

    def __repr__(self) -> str:
        return f"GeminiBackend(model={self.model_id!r}, api_key_env={self._key_env!r})"

    # -- helpers ---------------------------------------------------------------------------
    def _secret(self) -> str:
        return os.environ.get(self._key_env, "")

    def _scrub(self, text: str) -> str:
        k = self._secret()
        return text.replace(k, "***") if k else text

    def _client(self):
        from google import genai
        from google.genai import types

        opts: dict[str, Any] = {"timeout": int(float(self.cfg["timeout_s"]) * 1000)}
        if self.cfg.get("base_url"):
            opts["base_url"] = self.cfg["base_url"]
        return genai.Client(api_key=self._secret(), http_options=types.HttpOptions(**opts))

    def _config(self, req: GenRequest):
        from google.genai import types

        system = [m["content"] for m in req.messages if m.get("role") == "system"]
        c: dict[str, Any] = dict(temperature=req.temperature, top_p=req.top_p,
                                 max_output_tokens=req.max_new_tokens)
        if req.seed is not None:
            c["seed"] = int(req.seed)
        if system:
            c["system_instruction"] = "\n\n".join(system)
        if req.response_schema is not None:
            c["response_mime_type"] = "application/json"
            c["response_json_schema"] = req.response_schema
        if self.cfg.get("thinking_budget") is not None:
            c["thinking_config"] = types.ThinkingConfig(thinking_budget=int(self.cfg["thinking_budget"]))
        return types.GenerateContentConfig(**c)

    @staticmethod
    def _contents(req: GenRequest) -> list[dict]:
        out = []
        for i, m in enumerate(req.messages):
            role = m.get("role")
            if role == "system":
                continue
            if role not in ("user", "assistant"):
                raise ValueError(f"request {req.key}: message {i} has role {role!r} "
                                 "(expected system, user or assistant)")
            out.append({"role": "model" if role == "assistant" else "user",
                        "parts": [{"text": m["content"]}]})
        if not out:
            raise ValueError(f"request {req.key}: no user message")
        return out

    def _parse(self, key: str, resp: Any, attempts: int) -> GenResult:
        """Map a GenerateContentResponse onto a GenResult (finish reasons of llm.base)."""
        usage = getattr(resp, "usage_metadata", None)
        tin = int(getattr(usage, "prompt_token_count", None) or 0)
        tout = int(getattr(usage, "candidates_token_count", None) or 0) + \
            int(getattr(usage, "thoughts_token_count", None) or 0)
        base = dict(key=key, input_tokens=tin, output_tokens=tout, model=self.model_id, attempts=attempts)
        cands = getattr(resp, "candidates", None) or []
        if not cands:
            fb = getattr(resp, "prompt_feedback", None)
            block = getattr(fb, "block_reason", None)
            if block:
                return GenResult(text=None, finish_reason=FINISH_SAFETY,
                                 error=f"prompt blocked: {getattr(block, 'value', block)}", **base)
            return GenResult(text=None, finish_reason=FINISH_EMPTY, error="no candidates", **base)
        cand = cands[0]
        parts = getattr(getattr(cand, "content", None), "parts", None) or []
        text = "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))
        fr = getattr(cand, "finish_reason", None)
        fr = str(getattr(fr, "value", fr) or "")
        if fr in SAFETY_REASONS:
            return GenResult(text=text or None, finish_reason=FINISH_SAFETY, error=f"finish reason {fr}",
                             extra={"kind": "recitation" if fr == "RECITATION" else "safety"}, **base)
        if fr == "MAX_TOKENS":
            return GenResult(text=text or None, finish_reason=FINISH_LENGTH, error="MAX_TOKENS", **base)
        if not text.strip():
            return GenResult(text=None, finish_reason=FINISH_EMPTY, error=f"empty reply (finish reason {fr or 'none'})", **base)
        if fr not in ("STOP", "", "FINISH_REASON_UNSPECIFIED"):
            return GenResult(text=text, finish_reason=FINISH_ERROR, error=f"finish reason {fr}", **base)
        return GenResult(text=text, finish_reason=FINISH_STOP, **base)

    @staticmethod
    def _kind(res: GenResult) -> str:
        """The fault kind of a parsed reply (``ok`` when it is a usable answer)."""
        if res.extra.get("kind"):
            return res.extra["kind"]
        return {FINISH_STOP: "ok", FINISH_LENGTH: "max_tokens", FINISH_SAFETY: "safety",
                FINISH_EMPTY: "empty", FINISH_SCHEMA: "schema"}.get(res.finish_reason, "other_finish")

    def _fatal(self, exc: Any) -> APIConfigError | None:
        """An APIConfigError when the error means no request can succeed (else None)."""
        code = getattr(exc, "code", None)
        status = str(getattr(exc, "status", "") or "")
        msg = str(getattr(exc, "message", "") or "")
        reasons = {str(d.get("reason", "")) for d in _error_details(exc) if isinstance(d, dict)}
        quota_ids = [str(v.get("quotaId", "")) for d in _error_details(exc) if isinstance(d, dict)
                     for v in (d.get("violations") or []) if isinstance(v, dict)]
        env = self._key_env
        what = None
        if code == 400 and ("API_KEY_INVALID" in reasons or "api key not valid" in msg.lower()
                            or "API_KEY" in " ".join(reasons)):
            what = f"the API key in the environment variable {env} was rejected (API key not valid)"
        elif code == 401:
            what = f"the API key in the environment variable {env} was not accepted (unauthenticated)"
        elif code == 403:
            what = (f"permission denied for the API key in the environment variable {env} "
                    f"(the key lacks access to the Gemini API or to model {self.model_id!r})")
        elif code == 404:
            what = f"model {self.model_id!r} is not found or not supported for generateContent (config key model)"
        elif code == 429 and any("perday" in q.lower() for q in quota_ids):
            what = (f"the daily quota of the API key in the environment variable {env} is exhausted "
                    f"({', '.join(q for q in quota_ids if 'perday' in q.lower())}); "
                    "rerun tomorrow or raise the quota")
        if what is None:
            return None
        detail = self._scrub(msg)[:200]
        return APIConfigError(f"Gemini API: {what} [HTTP {code} {status}: {detail}]")

    def _count(self, kind: str) -> None:
        by = self.stats["by_kind"]
        by[kind] = by.get(kind, 0) + 1

    def _est_tokens(self, req: GenRequest) -> int:
        chars = sum(len(m.get("content", "")) for m in req.messages)
        return chars // 4 + 1 + int(req.max_new_tokens)

    def _backoff(self, attempt: int) -> float:
        cap = min(float(self.cfg["backoff_max_s"]), float(self.cfg["backoff_initial_s"]) * 2 ** (attempt - 1))
        return cap * (0.5 + self._rng.random())

    # -- online mode -----------------------------------------------------------------------
    async def _one(self, client, req: GenRequest, sem, rpm: RateLimiter, tpm: RateLimiter,
                   settle: list | None = None) -> GenResult:
        from google.genai import errors

        max_tries = int(self.cfg["max_retries"]) + 1
        contents, config = self._contents(req), self._config(req)
        last = ""
        for attempt in range(1, max_tries + 1):
            est = self._est_tokens(req)
            wait: float | None = None
            async with sem:
                await rpm.acquire(1)
                await tpm.acquire(est)
                self.stats["requests"] += 1
                sent = self.ledger.sent(req.key, est) if self.ledger is not None else None
                try:
                    resp = await asyncio.wait_for(
                        client.aio.models.generate_content(model=self.model_id, contents=contents, config=config),
                        timeout=float(self.cfg["timeout_s"]))
                except errors.APIError as exc:
                    code = getattr(exc, "code", None)
                    fatal = self._fatal(exc)
                    if fatal is not None:
                        self._record(sent, "config_error", retry=False)
                        raise fatal from None
                    last = self._scrub(f"HTTP {code}: {getattr(exc, 'message', '') or exc.__class__.__name__}")
                    if code in RETRY_CODES or (isinstance(code, int) and code >= 500):
                        kind = f"http_{code}" if code in (408, 429) else "http_5xx"
                        wait = _retry_after_s(exc)
                    else:
                        self._record(sent, "http_4xx", retry=False)
                        return GenResult(key=req.key, text=None, finish_reason=FINISH_ERROR, model=self.model_id,
                                         error=last, attempts=attempt, extra={"kind": "http_4xx"})
                except asyncio.CancelledError:
                    raise
                except (asyncio.TimeoutError, TimeoutError) as exc:
                    kind, last = "timeout", f"{exc.__class__.__name__}: no reply within timeout_s"
                except self._transient as exc:
                    kind, last = "transport", self._scrub(f"{exc.__class__.__name__}: connection error")
                except Exception as exc:  # noqa: BLE001 - a cut-off or non-JSON body, a reply the SDK cannot read
                    kind, last = "malformed", self._scrub(f"{exc.__class__.__name__}: unreadable reply")[:300]
                else:
                    res = self._parse(req.key, resp, attempt)
                    if res.finish_reason == FINISH_STOP and req.response_schema is not None:
                        why = schema_violation(res.text, req.response_schema)
                        if why:
                            res.finish_reason, res.error = FINISH_SCHEMA, f"reply ignores the response schema: {why}"
                    tpm.refund(est - (res.input_tokens + res.output_tokens) if res.input_tokens else 0)
                    record = (sent, self._kind(res), False, (res.input_tokens, res.output_tokens))
                    if settle is None:
                        self._record(*record)
                    else:   # counted once the caller has stored the reply: a kill in between leaves it
                        settle.append(record)   # "in flight" in the ledger, never received-but-lost
                    return res
                retry = attempt < max_tries
                self._record(sent, kind, retry=retry)
            if retry:
                self.stats["retries"] += 1
                delay = self._backoff(attempt)
                if wait is not None:
                    delay = max(delay, min(wait, RETRY_AFTER_CAP_S))
                await asyncio.sleep(delay)
        return GenResult(key=req.key, text=None, finish_reason=FINISH_ERROR, model=self.model_id,
                         error=f"gave up after {max_tries} tries; last: {last}", attempts=max_tries,
                         extra={"kind": "gave_up"})

    def _record(self, sent: Any, kind: str, retry: bool, tokens: tuple[int, int] = (0, 0)) -> None:
        self._count(kind)
        if self.ledger is not None and sent is not None:
            self.ledger.replied(sent, kind, retry=retry, tokens_in=tokens[0], tokens_out=tokens[1])

    async def _run(self, requests: Sequence[GenRequest], progress, on_result) -> list[GenResult]:
        client = self._client()
        sem = asyncio.Semaphore(int(self.cfg["concurrency"]))
        rpm, tpm = RateLimiter(float(self.cfg["rpm"] or 0)), RateLimiter(float(self.cfg["tpm"] or 0))
        results: list[GenResult | None] = [None] * len(requests)

        async def task(i: int, req: GenRequest):
            settle: list = []
            res = await self._one(client, req, sem, rpm, tpm, settle)
            results[i] = res
            if on_result:
                on_result(res)      # the reply cache stores it (fsynced) ...
            for record in settle:   # ... before the ledger counts it as received
                self._record(*record)
            if progress:
                progress(1)

        tasks = [asyncio.ensure_future(task(i, r)) for i, r in enumerate(requests)]
        try:
            # only a configuration error of the API (or a bug) escapes a task: stop all at once
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()
        finally:
            for t in tasks:
                t.cancel()
            try:
                await client.aio.aclose()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        return results  # type: ignore[return-value]

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 on_result: Callable[[GenResult], None] | None = None) -> list[GenResult]:
        if not requests:
            return []
        if len({r.key for r in requests}) != len(requests):
            raise ValueError("GeminiBackend.generate: request keys must be unique")
        check_api_key({**self.cfg, "backend": "gemini"})
        try:
            if self.cfg.get("batch_api"):
                return self._generate_batch(requests, progress, on_result)
            return asyncio.run(self._run(requests, progress, on_result))
        except Exception as exc:  # never let an unexpected error carry the key out
            k = self._secret()
            if k and k in f"{exc!s}{exc!r}":
                raise RuntimeError(self._scrub(f"{exc.__class__.__name__}: {exc}")) from None
            raise

    # -- Batch API mode --------------------------------------------------------------------
    def _batch_state(self) -> dict:
        if self.state_path and Path(self.state_path).is_file():
            return read_json(self.state_path)
        return {}

    def _generate_batch(self, requests, progress, on_result) -> list[GenResult]:
        """Submit one batch (inlined requests), record its name in the state file before
        polling, and on a rerun with the same requests resume polling that batch."""
        from google.genai import types

        if not self.state_path:
            raise ValueError("gemini batch_api needs a state file: wrap the backend in CachedBackend "
                             "or set batch_state_path")
        fp = stable_hash([self.model_id, [r.settings() for r in requests], [r.key for r in requests]], 24)
        state = self._batch_state()
        client = self._client()
        entry = state.get(fp)
        if entry is None:
            inlined = []
            for r in requests:
                inlined.append(types.InlinedRequest(contents=self._contents(r), config=self._config(r),
                                                    metadata={"key": r.key}))
            job = client.batches.create(model=self.model_id, src=inlined,
                                        config={"display_name": f"doctune-{fp}"})
            self.stats["requests"] += 1
            entry = {"name": job.name, "n": len(requests), "submitted": time.time()}
            state[fp] = entry
            atomic_write_json(self.state_path, state)
            log.info("submitted Gemini batch %s (%d requests)", job.name, len(requests))
        else:
            log.info("resuming Gemini batch %s", entry["name"])
        deadline = time.monotonic() + float(self.cfg["batch_max_wait_s"])
        while True:
            job = client.batches.get(name=entry["name"])
            st = str(getattr(job.state, "value", job.state))
            if st == "JOB_STATE_SUCCEEDED":
                break
            if st in ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"):
                state.pop(fp, None)
                atomic_write_json(self.state_path, state)
                raise RuntimeError(f"Gemini batch {entry['name']} ended in state {st}; "
                                   "rerun to submit a new batch")
            if time.monotonic() > deadline:
                raise TimeoutError(f"Gemini batch {entry['name']} not done after batch_max_wait_s; "
                                   "rerun to resume polling it")
            time.sleep(float(self.cfg["batch_poll_s"]))
        responses = list(getattr(getattr(job, "dest", None), "inlined_responses", None) or [])
        by_key: dict[str, Any] = {}
        for i, item in enumerate(responses):
            md = getattr(item, "metadata", None) or {}
            k = md.get("key") if isinstance(md, dict) else None
            by_key[k if k is not None else requests[i].key] = item
        results = []
        for r in requests:
            item = by_key.get(r.key)
            if item is None:
                res = GenResult(key=r.key, text=None, finish_reason=FINISH_ERROR, model=self.model_id,
                                error="missing from batch output")
            elif getattr(item, "error", None) is not None:
                res = GenResult(key=r.key, text=None, finish_reason=FINISH_ERROR, model=self.model_id,
                                error=self._scrub(json.dumps(getattr(item.error, "model_dump", lambda: str(item.error))(), default=str)))
            else:
                res = self._parse(r.key, item.response, 1)
            results.append(res)
            if on_result:
                on_result(res)
            if progress:
                progress(1)
        state.pop(fp, None)
        atomic_write_json(self.state_path, state)
        return results

    def close(self) -> None:
        pass
