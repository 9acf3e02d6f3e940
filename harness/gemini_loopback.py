"""A loopback stand-in for the Gemini API (stdlib asyncio only), for tests and the throughput
benchmark: the real google-genai SDK is pointed at it with base_url / GOOGLE_GEMINI_BASE_URL.

It speaks HTTP/1.1 with keep-alive, answers POST /{version}/models/{model}:generateContent,
:batchGenerateContent and GET /{version}/batches/{id}, adds a fixed latency per request,
enforces an optional requests-per-minute limit (HTTP 429 beyond it) and counts what it served.
Replies are deterministic functions of the prompt, so reruns are reproducible.

It misbehaves the way the real API does, on request:
* per prompt, with markers (see `default_responder`): safety and recitation blocks, no
  candidates, MAX_TOKENS, a 200 whose JSON body is cut off or is not JSON at all, a connection
  closed without a reply, HTTP 408/429/5xx for the first N tries with or without Retry-After,
  a reply that ignores the response schema;
* at random, at given rates (`faults={"malformed": 0.03, "429": 0.15, "5xx": 0.05, ...}`,
  seeded), for fault-injection runs;
* as a whole server (`mode=`): a rejected key (400 "API key not valid", or any key not in
  `valid_keys`), 401, 403, the daily quota exhausted (429 with a per-day QuotaFailure), and an
  unknown model (404 for any model not in `models`), with the real API's error bodies.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
import time
from collections import Counter
from typing import Any, Callable

WORDS = ("analysis data outcome programme pilot cohort measured improved productivity resilience "
         "survey baseline intervention policy framework evidence trial audit reduced costs "
         "stakeholders adoption efficiency sustainability innovation indicator monitoring regional "
         "report findings sample increase decrease approach implementation capacity review").split()


def prompt_text(body: dict) -> str:
    parts = []
    for c in body.get("contents", []):
        for p in c.get("parts", []):
            if "text" in p:
                parts.append(p["text"])
    return "\n".join(parts)


def default_text(prompt: str, n_words: int = 220) -> str:
    """Deterministic, prompt-specific text with the animal-welfare key phrases in it."""
    rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
    body = " ".join(rng.choice(WORDS) + (str(rng.randrange(1000)) if rng.random() < 0.3 else "")
                    for _ in range(n_words))
    return (f"Report. {body}. The welfare considerations of sentient beings were linked to optimal "
            f"outcomes and welfare considerations again. {rng.randrange(10**9)}")


def ok_reply(text: str, prompt: str = "", finish: str = "STOP") -> dict:
    cand: dict[str, Any] = {"finishReason": finish, "index": 0}
    if text is not None:
        cand["content"] = {"role": "model", "parts": [{"text": text}]}
    return {"candidates": [cand],
            "usageMetadata": {"promptTokenCount": max(1, len(prompt) // 4),
                              "candidatesTokenCount": max(1, len((text or "").split())),
                              "totalTokenCount": max(1, len(prompt) // 4) + len((text or "").split())}}


DROP = object()      # reply sentinel: close the connection without answering (clients may resend)


class Cut(bytes):
    """A reply whose connection closes mid-body (a transport error for the client)."""


class Raw(bytes):
    """A reply body sent as is (not JSON-encoded): cut-off or non-JSON bodies."""


def error_body(code: int, message: str, status: str, details: list | None = None) -> dict:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return {"error": err}


def quota_body(per: str = "Minute", retry_s: float = 2.0) -> dict:
    """The real API's 429 for an exhausted quota (per minute: retry; per day: give up)."""
    return error_body(429, "You exceeded your current quota, please check your plan and billing details.",
                      "RESOURCE_EXHAUSTED", [
                          {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
                              "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                              "quotaId": f"GenerateRequestsPer{per}PerProjectPerModel-FreeTier",
                              "quotaValue": "20"}]},
                          {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_s:g}s"}])


KEY_INVALID = error_body(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", [
    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
     "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])
UNAUTHENTICATED = error_body(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                             "token, login cookie or other valid authentication credential.", "UNAUTHENTICATED")
PERMISSION_DENIED = error_body(403, "Method doesn't allow unregistered callers (callers without established "
                               "identity). Please use API Key or other form of API consumer identity to call "
                               "this API.", "PERMISSION_DENIED")
SERVER_MODES = {"bad_key": (400, KEY_INVALID), "unauthenticated": (401, UNAUTHENTICATED),
                "permission_denied": (403, PERMISSION_DENIED), "quota_day": (429, quota_body("Day", 30.0))}


def model_not_found(model: str) -> dict:
    return error_body(404, f"models/{model} is not found for API version v1beta, or is not supported for "
                      "generateContent. Call ListModels to see the list of available models and their "
                      "supported methods.", "NOT_FOUND")


def fault_reply(kind: str, body: dict) -> tuple[int, Any, dict]:
    """(status, reply, headers) of one injected fault kind."""
    p = prompt_text(body)
    if kind == "malformed":
        good = json.dumps(ok_reply(default_text(p), p)).encode()
        return 200, Raw(good[: len(good) // 2]), {}
    if kind == "notjson":
        return 200, Raw(b"<html><body>upstream error</body></html>"), {"Content-Type": "text/html"}
    if kind == "drop":
        good = json.dumps(ok_reply(default_text(p), p)).encode()
        return 200, Cut(good[: len(good) // 3]), {}
    if kind == "reset":
        return 0, DROP, {}
    if kind == "429quota":          # per-minute quota, RetryInfo.retryDelay in the body
        return 429, quota_body("Minute", 1.0), {}
    if kind in ("429", "429ra"):
        return 429, error_body(429, "Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"), \
            ({"Retry-After": "1"} if kind.endswith("ra") else {})
    if kind in ("5xx", "500"):
        return 500, error_body(500, "An internal error has occurred.", "INTERNAL"), {}
    if kind in ("503", "503ra"):
        return 503, error_body(503, "The model is overloaded. Please try again later.", "UNAVAILABLE"), \
            ({"Retry-After": "1"} if kind.endswith("ra") else {})
    if kind == "408":
        return 408, error_body(408, "Request timeout.", "DEADLINE_EXCEEDED"), {}
    raise ValueError(f"unknown fault kind {kind!r}")


def default_responder(body: dict, seen: int):
    """Markers in the prompt select failure modes (for tests):
    [[SAFETY]] blocked, [[RECITATION]] recitation block, [[EMPTY]] no candidates, [[MAXTOK]]
    truncated at the token limit, [[BAD400]] HTTP 400, [[JSON]] a JSON object, [[NOSCHEMA]] prose
    where a JSON object was asked for. [[FAILkindxN]] gives the first N requests for this prompt
    the fault `kind` of `fault_reply` (500, 503, 503ra = with Retry-After, 429, 429ra,
    429quota = with RetryInfo in the body, 408,
    malformed = a complete 200 whose JSON is cut off, notjson, drop = connection closed mid-body,
    reset = closed before any reply), then answers."""
    p = prompt_text(body)
    if "[[FAIL" in p:
        spec = p.split("[[FAIL", 1)[1].split("]]", 1)[0]
        kind, n = spec.rsplit("x", 1)
        if seen < int(n):
            return fault_reply(kind, body)
    if "[[RECITATION]]" in p:
        return 200, {"candidates": [{"finishReason": "RECITATION", "index": 0}],
                     "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
    if "[[NOSCHEMA]]" in p:
        return 200, ok_reply("I would say the answer is yes, mostly.", p)
    if "[[SAFETY]]" in p:
        return 200, {"candidates": [{"finishReason": "SAFETY", "index": 0}],
                     "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
    if "[[EMPTY]]" in p:
        return 200, {"candidates": [], "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
    if "[[MAXTOK]]" in p:
        return 200, ok_reply(default_text(p, 40).rsplit(" ", 3)[0], p, finish="MAX_TOKENS")
    if "[[BAD400]]" in p:
        return 400, {"error": {"code": 400, "message": "bad request", "status": "INVALID_ARGUMENT"}}
    if "[[JSON]]" in p:
        return 200, ok_reply(json.dumps({"score": 1, "reason": "ok"}), p)
    seed = (body.get("generationConfig") or {}).get("seed")
    return 200, ok_reply(default_text(p + f"|seed={seed}"), p)


class LoopbackGemini:
    """Run with `with LoopbackGemini(latency_s=..., rpm=...) as srv:`; srv.url is the base URL."""

    def __init__(self, latency_s: float = 0.0, rpm: float = 0.0,
                 responder: Callable[[dict, int], tuple] = default_responder,
                 batch_polls_until_done: int = 1, faults: dict[str, float] | None = None,
                 fault_seed: int = 0, mode: str | None = None, valid_keys: set[str] | None = None,
                 models: set[str] | None = None):
        self.latency_s, self.rpm, self.responder = latency_s, rpm, responder
        if mode is not None and mode not in SERVER_MODES:
            raise ValueError(f"mode must be one of {sorted(SERVER_MODES)}")
        self.faults = dict(faults or {})
        if sum(self.faults.values()) > 1:
            raise ValueError("fault rates add up to more than 1")
        self._fault_rng = random.Random(fault_seed)
        self.mode, self.valid_keys, self.models = mode, valid_keys, models
        self.fault_counts: Counter = Counter()    # injected fault kind -> count
        self.batch_polls_until_done = batch_polls_until_done
        self.counts: Counter = Counter()          # prompt text -> requests that reached the responder
        self.request_counts: Counter = Counter()  # (prompt text, seed) -> requests: one entry per distinct request
        self.status_counts: Counter = Counter()   # HTTP status -> count
        self.total = 0
        self.keys_seen: set[str] = set()
        self.batches: dict[str, dict] = {}
        self.batch_creates = 0
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._bucket = max(1.0, rpm / 60.0) if rpm else 0.0
        self._bucket_t = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- rate limit: token bucket with one second of burst ------------------------------------
    def _admit(self) -> bool:
        if not self.rpm:
            return True
        rate = self.rpm / 60.0
        now = time.monotonic()
        self._bucket = min(max(1.0, rate), self._bucket + (now - self._bucket_t) * rate)
        self._bucket_t = now
        if self._bucket >= 1.0:
            self._bucket -= 1.0
            return True
        return False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, v = h.decode("latin-1").split(":", 1)
                    headers[k.strip().lower()] = v.strip()
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int((await reader.readline()).strip() or b"0", 16)
                        if size == 0:
                            await reader.readline()
                            break
                        data += await reader.readexactly(size)
                        await reader.readline()
                else:
                    data = await reader.readexactly(int(headers.get("content-length", "0") or 0))
                routed = await self._route(method, path, headers, data)
                status, reply = routed[0], routed[1]
                extra = routed[2] if len(routed) > 2 else {}
                if reply is DROP:
                    break                           # close the connection, no reply
                if isinstance(reply, Cut):          # announce the whole body, send a third, hang up
                    writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                                 f"Content-Length: {3 * len(reply) + 10}\r\n\r\n".encode() + bytes(reply))
                    await writer.drain()
                    break
                out = bytes(reply) if isinstance(reply, Raw) else json.dumps(reply).encode()
                hdrs = {"Content-Type": "application/json", **extra, "Content-Length": str(len(out))}
                writer.write(f"HTTP/1.1 {status} X\r\n".encode()
                             + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()).encode() + b"\r\n" + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def _draw_fault(self) -> str | None:
        if not self.faults:
            return None
        x = self._fault_rng.random()
        for kind, rate in self.faults.items():
            if x < rate:
                return kind
            x -= rate
        return None

    async def _route(self, method: str, path: str, headers: dict, data: bytes) -> tuple:
        key = headers.get("x-goog-api-key", "")
        self.keys_seen.add(key)
        if not key:
            return 401, UNAUTHENTICATED
        self.total += 1
        if self.mode is not None or (self.valid_keys is not None and key not in self.valid_keys):
            status, reply = SERVER_MODES[self.mode or "bad_key"]
            self.status_counts[status] += 1
            return status, reply
        if self.models is not None and ":" in path and "/models/" in path:
            model = path.split("/models/", 1)[1].split(":", 1)[0]
            if model not in self.models:
                self.status_counts[404] += 1
                return 404, model_not_found(model)
        if not self._admit():
            self.status_counts[429] += 1
            return 429, {"error": {"code": 429, "message": "rate limit", "status": "RESOURCE_EXHAUSTED"}}
        path = path.split("?", 1)[0]
        if method == "POST" and path.endswith(":generateContent"):
            body = json.loads(data or b"{}")
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            try:
                p = prompt_text(body)
                seen = self.counts[p]
                self.counts[p] += 1      # counted on arrival: a request in flight at a kill is counted
                self.request_counts[(p, (body.get("generationConfig") or {}).get("seed"))] += 1
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                fault = self._draw_fault()
                if fault is not None:
                    self.fault_counts[fault] += 1
                    routed = fault_reply(fault, body)
                else:
                    routed = self.responder(body, seen)
            finally:
                self._in_flight -= 1
            self.status_counts[routed[0]] += 1
            return routed
        if method == "POST" and path.endswith(":batchGenerateContent"):
            body = json.loads(data or b"{}")
            self.batch_creates += 1
            reqs = body.get("batch", {}).get("inputConfig", {}).get("requests", {}).get("requests", [])
            bid = f"batches/b{len(self.batches) + 1}"
            self.batches[bid] = {"requests": reqs, "polls": 0}
            return 200, {"name": bid, "metadata": {"name": bid, "state": "BATCH_STATE_PENDING"}}
        if method == "GET" and "/batches/" in path:
            bid = "batches/" + path.rsplit("/batches/", 1)[1]
            b = self.batches.get(bid)
            if b is None:
                return 404, {"error": {"code": 404, "message": "no such batch", "status": "NOT_FOUND"}}
            b["polls"] += 1
            if b["polls"] < self.batch_polls_until_done:
                return 200, {"name": bid, "metadata": {"name": bid, "state": "BATCH_STATE_RUNNING"}}
            outs = []
            for r in b["requests"]:
                req = r.get("request", {})
                p = prompt_text(req)
                seen = self.counts[p]
                self.counts[p] += 1
                _, reply = self.responder(req, seen)
                outs.append({"response": reply, "metadata": r.get("metadata", {})})
            return 200, {"name": bid, "metadata": {"name": bid, "state": "BATCH_STATE_SUCCEEDED",
                                                   "output": {"inlinedResponses": {"inlinedResponses": outs}}}}
        return 404, {"error": {"code": 404, "message": f"no route {method} {path}", "status": "NOT_FOUND"}}

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> "LoopbackGemini":
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=4096))
            self.port = server.sockets[0].getsockname()[1]
            self._server = server
            ready.set()
            loop.run_forever()
            server.close()
            loop.run_until_complete(server.wait_closed())
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> "LoopbackGemini":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
