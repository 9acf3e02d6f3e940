"""CachedBackend: wraps any Backend so that every reply the API answered is stored the moment it
arrives (doctune.io.AppendCache: append + fsync), keyed by
stable_hash([model_id, request.settings()]). A rerun after a kill at any moment reuses every
stored reply and requests only the missing ones; identical requests within one call are sent
once.

What is stored: every complete reply, kept or not — usable ones, replies cut at the token limit
(which callers may keep with ``allow_truncated``), safety blocks, empty replies and replies that
ignore the response schema. Callers that want another answer ask again with other settings (a
new seed), so nothing the API answered is ever paid for twice. Only results that carry no reply
(``error``: the backend gave up after its retries, or the API refused the request) are not
stored, so a rerun tries them again.

Beside the cache, for backends that support it (Gemini), a ``Ledger`` (``CACHE.ledger.jsonl``)
records every attempt sent and every reply received with its kind and tokens, across runs: an
attempt sent with no reply recorded was in flight when a run was killed. Reports read
``Ledger.summary()`` so requests, retries, fault kinds, tokens and cost add up over interrupted
runs.

One process at a time uses a cache: an exclusive ``flock`` on ``CACHE.lock`` (released by the
kernel when the holder dies), so a rerun started while an orphaned job of a killed run is still
finishing waits for it and then reuses its replies.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import AppendCache, ensure_parent, stable_hash
from .base import FINISH_ERROR, Backend, GenRequest, GenResult, ProgressFn

log = logging.getLogger(__name__)


def cache_key(model_id: str, request: GenRequest, extra=None) -> str:
    parts = [model_id, request.settings()]
    if extra is not None:
        parts.append(extra)
    return stable_hash(parts, 32)


def storable(res: GenResult) -> bool:
    """Whether a result is a reply the API answered (and so must never be paid for again)."""
    return res.finish_reason != FINISH_ERROR


def api_cost(cfg: dict, tokens_in: int, tokens_out: int) -> float | None:
    """USD for an API backend config (price_in_per_mtok, price_out_per_mtok); None when the
    prices are not configured."""
    pin, pout = cfg.get("price_in_per_mtok"), cfg.get("price_out_per_mtok")
    if pin is None or pout is None:
        return None
    return round(tokens_in / 1e6 * float(pin) + tokens_out / 1e6 * float(pout), 6)


def spend(cfg: dict, api: dict) -> dict:
    """Tokens and cost of a ledger summary: what was spent over every run, and at most what the
    requests in flight at a kill may have cost (their estimated tokens, all at the output price)."""
    return {"tokens_in": api["tokens_in"], "tokens_out": api["tokens_out"],
            "estimated_cost_usd": api_cost(cfg, api["tokens_in"], api["tokens_out"]),
            "estimated_cost_in_flight_max_usd": api_cost(cfg, 0, api["in_flight_est_tokens"])}


class Ledger:
    """Append-only JSONL record of API attempts, over every run that used one cache.

    Lines: ``{"ev": "start", "run", "t", "pid"}`` once per run that sends anything,
    ``{"ev": "send", "run", "n", "est"}`` before each attempt goes out and
    ``{"ev": "reply", "run", "n", "kind", "retry", "in", "out"}`` when its outcome is known.
    Each line is written and flushed at once (a killed process loses none; a torn last line is
    skipped). A reply is recorded after the reply cache has stored it, so a kill between the two
    leaves a stored reply counted "in flight", never a received reply lost and paid for again.
    Keys and request texts are not recorded."""

    def __init__(self, path: str | os.PathLike):
        self.path = ensure_parent(path)
        self.events: list[dict] = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue            # torn tail from a kill
                if isinstance(ev, dict):
                    self.events.append(ev)
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                with self.path.open("r+b") as fh:
                    fh.truncate(raw.rfind(b"\n") + 1)
        self.run = 1 + max((int(e.get("run", 0)) for e in self.events), default=0)
        self._n = 0
        self._started = False
        self._fh = None

    def _write(self, ev: dict) -> None:
        if self._fh is None:
            self._fh = self.path.open("a", encoding="utf-8")
        self._fh.write(json.dumps(ev, separators=(",", ":")) + "\n")
        self._fh.flush()
        self.events.append(ev)

    def sent(self, key: str, est_tokens: int = 0) -> int:
        if not self._started:
            self._started = True
            self._write({"ev": "start", "run": self.run, "t": round(time.time(), 3), "pid": os.getpid()})
        self._n += 1
        self._write({"ev": "send", "run": self.run, "n": self._n, "est": int(est_tokens)})
        return self._n

    def replied(self, n: int, kind: str, retry: bool = False, tokens_in: int = 0, tokens_out: int = 0) -> None:
        self._write({"ev": "reply", "run": self.run, "n": n, "kind": kind, "retry": bool(retry),
                     "in": int(tokens_in or 0), "out": int(tokens_out or 0)})

    def summary(self) -> dict:
        """Totals over every run: runs, requests_sent, replies_by_kind, retries,
        in_flight_at_kill (sent, no reply recorded: the run was killed or stopped meanwhile),
        tokens_in, tokens_out, in_flight_est_tokens (upper estimate of their tokens)."""
        sends: dict[tuple, int] = {}
        replied: set[tuple] = set()
        by_kind: dict[str, int] = {}
        runs: set = set()
        retries = tin = tout = 0
        for e in self.events:
            ev = e.get("ev")
            if ev == "start":
                runs.add(e.get("run"))
            elif ev == "send":
                sends[(e.get("run"), e.get("n"))] = int(e.get("est") or 0)
            elif ev == "reply":
                replied.add((e.get("run"), e.get("n")))
                k = str(e.get("kind"))
                by_kind[k] = by_kind.get(k, 0) + 1
                retries += bool(e.get("retry"))
                tin += int(e.get("in") or 0)
                tout += int(e.get("out") or 0)
        lost = [k for k in sends if k not in replied]
        return {"runs": len(runs), "requests_sent": len(sends), "replies_by_kind": dict(sorted(by_kind.items())),
                "retries": retries, "in_flight_at_kill": len(lost),
                "in_flight_est_tokens": sum(sends[k] for k in lost), "tokens_in": tin, "tokens_out": tout}

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


class _CacheLock:
    """An exclusive flock on PATH; waits (saying so) while another process holds it."""

    def __init__(self, path: Path):
        import fcntl

        self.fh = open(ensure_parent(path), "a+", encoding="utf-8")
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "?"
            log.warning("cache %s is in use by another process (pid %s, e.g. a job of a killed run "
                        "still finishing); waiting for it", path, holder)
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(str(os.getpid()))
        self.fh.flush()

    def release(self) -> None:
        if not self.fh.closed:
            self.fh.close()          # closing drops the flock


class CachedBackend:
    def __init__(self, backend: Backend, cache_path: str | os.PathLike):
        self.backend = backend
        self.model_id = backend.model_id
        self.cache_path = Path(cache_path)
        self._lock = _CacheLock(Path(str(self.cache_path) + ".lock"))
        self.cache = AppendCache(self.cache_path)
        # backends with resumable server-side jobs (Gemini Batch API) keep their state beside the cache
        if getattr(backend, "state_path", False) is None:
            backend.state_path = str(self.cache_path) + ".batch-state.json"
        # backends that count their attempts (Gemini) keep a ledger beside the cache
        self.ledger: Ledger | None = None
        if hasattr(backend, "ledger") and getattr(backend, "ledger") is None:
            self.ledger = Ledger(str(self.cache_path) + ".ledger.jsonl")
            backend.ledger = self.ledger
        self.hits = 0
        self.misses = 0

    def _key(self, req: GenRequest) -> str:
        return cache_key(self.model_id, req, getattr(self.backend, "cache_extra", None))

    def api_summary(self) -> dict | None:
        """The ledger's totals over every run of this cache (None for backends without one)."""
        return self.ledger.summary() if self.ledger is not None else None

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 on_result: Callable[[GenResult], None] | None = None) -> list[GenResult]:
        keys = [self._key(r) for r in requests]
        results: list[GenResult | None] = [None] * len(requests)
        to_send: dict[str, GenRequest] = {}
        waiting: dict[str, list[int]] = {}
        for i, (req, k) in enumerate(zip(requests, keys)):
            rec = self.cache.get(k)
            if rec is not None:
                res = GenResult.from_dict(rec["result"])
                res.key, res.cached = req.key, True
                results[i] = res
                self.hits += 1
                if on_result:
                    on_result(res)
                if progress:
                    progress(1)
                continue
            waiting.setdefault(k, []).append(i)
            if k not in to_send:
                to_send[k] = GenRequest(**{**req.settings(), "key": k})
        self.misses += len(to_send)

        done: set[str] = set()

        def store(res: GenResult) -> None:
            k = res.key
            if k in done:
                return
            done.add(k)
            if storable(res):
                d = res.to_dict()
                d["key"] = None
                self.cache.put(k, {"result": d})
            for i in waiting.get(k, []):
                r = GenResult.from_dict(res.to_dict())
                r.key = requests[i].key
                results[i] = r
                if on_result:
                    on_result(r)
            if progress:
                progress(len(waiting.get(k, [])))

        if to_send:
            for res in self.backend.generate(list(to_send.values()), progress=None, on_result=store):
                store(res)  # backends that do not call on_result
        missing = [requests[i].key for i, r in enumerate(results) if r is None]
        if missing:
            raise RuntimeError(f"backend {self.model_id!r} returned no result for {len(missing)} "
                               f"request(s), e.g. {missing[:3]}")
        return results  # type: ignore[return-value]

    def close(self) -> None:
        self.cache.close()
        if self.ledger is not None:
            self.ledger.close()
        self.backend.close()
        self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
