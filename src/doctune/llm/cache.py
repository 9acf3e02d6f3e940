"""CachedBackend: wraps any Backend so that every successful reply is stored the moment it
arrives (doctune.io.AppendCache: append + fsync), keyed by
stable_hash([model_id, request.settings()]). A rerun after a kill at any moment reuses every
stored reply and requests only the missing ones; identical requests within one call are sent
once. Failed results (safety, empty, length, error) are not stored, so they are retried on a
rerun."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from ..io import AppendCache, stable_hash
from .base import Backend, GenRequest, GenResult, ProgressFn


def cache_key(model_id: str, request: GenRequest, extra=None) -> str:
    parts = [model_id, request.settings()]
    if extra is not None:
        parts.append(extra)
    return stable_hash(parts, 32)


class CachedBackend:
    def __init__(self, backend: Backend, cache_path: str | Path):
        self.backend = backend
        self.model_id = backend.model_id
        self.cache_path = Path(cache_path)
        self.cache = AppendCache(self.cache_path)
        # backends with resumable server-side jobs (Gemini Batch API) keep their state beside the cache
        if getattr(backend, "state_path", False) is None:
            backend.state_path = str(self.cache_path) + ".batch-state.json"
        self.hits = 0
        self.misses = 0

    def _key(self, req: GenRequest) -> str:
        return cache_key(self.model_id, req, getattr(self.backend, "cache_extra", None))

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
            if res.ok:
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
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
