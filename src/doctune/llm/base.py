"""One small interface for every text generator: Gemini (API) and local transformers models.
Which backends exist, what each can do and how one is built: ``doctune.llm.registry``.

Backends take a list of GenRequest and return GenResult in the same order. Caching lives in
`doctune.llm.cache.CachedBackend`, so a rerun never pays twice for a reply the API answered.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol, Sequence

# finish reasons every backend maps onto
FINISH_STOP = "stop"          # natural end
FINISH_LENGTH = "length"      # hit max tokens (truncated)
FINISH_SAFETY = "safety"      # blocked / filtered by the provider
FINISH_EMPTY = "empty"        # no text came back
FINISH_SCHEMA = "schema"      # the reply ignores the requested response schema
FINISH_ERROR = "error"        # gave up after retries, or a request the API refused; `error` says why


@dataclass
class GenRequest:
    key: str                                   # caller's id, unique within one call
    messages: list[dict]                       # [{"role": "system"|"user"|"assistant", "content": str}]
    max_new_tokens: int = 512
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    response_schema: dict | None = None        # JSON schema for structured output (Gemini); hf ignores it
    raw_prompt: bool = False                   # hf: messages[0]["content"] is a plain prompt, no chat template

    def settings(self) -> dict:
        d = asdict(self)
        d.pop("key")
        return d


@dataclass
class GenResult:
    key: str
    text: str | None
    finish_reason: str
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    error: str | None = None
    attempts: int = 1
    cached: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.finish_reason == FINISH_STOP and bool(self.text and self.text.strip())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GenResult":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


ProgressFn = Callable[[int], None]


class Backend(Protocol):
    model_id: str

    def generate(self, requests: Sequence[GenRequest], progress: ProgressFn | None = None,
                 on_result: Callable[[GenResult], None] | None = None) -> list[GenResult]:
        """Generate one result per request, in request order. `on_result` is called as soon as
        each result is known (so callers can persist it at once)."""
        ...

    def close(self) -> None: ...
