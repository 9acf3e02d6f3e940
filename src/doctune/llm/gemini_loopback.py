"""A loopback stand-in for the Gemini API (stdlib asyncio only), for tests and the throughput
benchmark: the real google-genai SDK is pointed at it with base_url / GOOGLE_GEMINI_BASE_URL.

It speaks HTTP/1.1 with keep-alive, answers POST /{version}/models/{model}:generateContent,
:batchGenerateContent and GET /{version}/batches/{id}, adds a fixed latency per request,
enforces an optional requests-per-minute limit (HTTP 429 beyond it) and counts what it served.
Replies are deterministic functions of the prompt, so reruns are reproducible. It holds no key
and checks only that one was sent.
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


def default_responder(body: dict, seen: int) -> tuple[int, dict]:
    """Markers in the prompt select failure modes (for tests):
    [[SAFETY]] blocked, [[EMPTY]] no candidates, [[MAXTOK]] truncated, [[FAIL500xN]] the first N
    requests for this prompt get HTTP 500, [[BAD400]] HTTP 400. [[JSON]] returns a JSON object."""
    p = prompt_text(body)
    if "[[SAFETY]]" in p:
        return 200, {"candidates": [{"finishReason": "SAFETY", "index": 0}],
                     "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
    if "[[EMPTY]]" in p:
        return 200, {"candidates": [], "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3}}
    if "[[MAXTOK]]" in p:
        return 200, ok_reply("truncated text " * 5, p, finish="MAX_TOKENS")
    if "[[BAD400]]" in p:
        return 400, {"error": {"code": 400, "message": "bad request", "status": "INVALID_ARGUMENT"}}
    if "[[FAIL500x" in p:
        n = int(p.split("[[FAIL500x", 1)[1].split("]]", 1)[0])
        if seen < n:
            return 500, {"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}
    if "[[JSON]]" in p:
        return 200, ok_reply(json.dumps({"score": 1, "reason": "ok"}), p)
    seed = (body.get("generationConfig") or {}).get("seed")
    return 200, ok_reply(default_text(p + f"|seed={seed}"), p)


class LoopbackGemini:
    """Run with `with LoopbackGemini(latency_s=..., rpm=...) as srv:`; srv.url is the base URL."""

    def __init__(self, latency_s: float = 0.0, rpm: float = 0.0,
                 responder: Callable[[dict, int], tuple[int, dict]] = default_responder,
                 batch_polls_until_done: int = 1):
        self.latency_s, self.rpm, self.responder = latency_s, rpm, responder
        self.batch_polls_until_done = batch_polls_until_done
        self.counts: Counter = Counter()          # prompt text -> requests that reached the responder
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
                status, reply = await self._route(method, path, headers, data)
                out = json.dumps(reply).encode()
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(out)}\r\n\r\n".encode() + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    async def _route(self, method: str, path: str, headers: dict, data: bytes) -> tuple[int, dict]:
        self.keys_seen.add(headers.get("x-goog-api-key", ""))
        if not headers.get("x-goog-api-key"):
            return 401, {"error": {"code": 401, "message": "no key", "status": "UNAUTHENTICATED"}}
        self.total += 1
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
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)
                status, reply = self.responder(body, seen)
            finally:
                self._in_flight -= 1
            self.status_counts[status] += 1
            return status, reply
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
