"""Judging completions, for every benchmark kind of stage "judge" (``kind.units``,
``kind.prompt``, ``kind.parse``; see ``doctune.evaluation.kinds``): one verdict per unit x judge.

Two ways to judge:

* ``generate`` (default for Gemini): the judge writes a reply in the benchmark's judge format
  (``judge_format``: the AHB's reference format ends in ``GRADE: C``/``GRADE: I``; ``json`` asks
  for a JSON object through structured output), parsed by the kind. An unparseable or failed
  reply is asked again with a new seed (so the reply cache does not hand back the same bad reply),
  up to ``parse_retries`` times (judge config key, default 2; the reference asks once: set 0 for
  fidelity); after that the unit is stored with ``score: null`` and ``unparseable: true``, never as 0
  (the benchmark's metrics decide what an unparseable grade counts as).
* ``logprob`` (default for hf): the judge model scores each allowed label as the continuation of
  the prompt (``option_logprobs``, format "label", or a kind's other ``logprob_formats`` such as the
  AHB's short "yes_no" question) and the verdict is the argmax; for a binary verdict the
  probability of the positive label is kept in ``prob``. Rubric kinds ask one question per field.
  ``calibration: empty_answer`` (judge config key) scores the same prompt with the answer left
  empty as well and subtracts its label log-probabilities before the argmax (contextual
  calibration, Zhao et al. 2021, with the empty answer as the content-free input): the rubrics
  grade an empty answer 0, so the judge's lean on it is its bias, not evidence about the answer.

Every judge call goes through a cache (``CachedBackend`` for generated replies, an AppendCache
for label log-probabilities), so a rerun does not pay again for a verdict it already has.

Score lines (``results/scores/{model}/{benchmark}.jsonl``)::

    {"unit_id", "item_id", "epoch", "dimension", "combination", "judge", "judge_model",
     "score": 0|1|rubric score|null, "raw", "fields", "weight", "prob", "attempts", "error",
     "unparseable", "format", "truncated" (the completion hit max_new_tokens),
     + the kind's unit_extra (AHB: "vset", "prompt_source")}
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Callable, Sequence

from ..io import AppendCache, DataError, atomic_write_json, read_jsonl, stable_hash, write_jsonl
from ..llm.base import GenRequest
from .kinds import BenchmarkKind, Verdict, get_kind

log = logging.getLogger(__name__)



def judge_defaults() -> dict:
    """A judge's defaults: config/schema.yaml's backend object with the judges' own x-defaults."""
    from ..workflow.config import schema_defaults

    return schema_defaults("properties", "judges", "additionalProperties")
CALIBRATIONS = ("none", "empty_answer")


def _completion_rows(path: str) -> list[dict]:
    rows = read_jsonl(path)
    for i, r in enumerate(rows, start=1):
        for k in ("id", "completion"):
            if k not in r:
                raise DataError(f"{path}:{i}: completion row lacks {k!r}")
        r["id"] = str(r["id"])
        r["epoch"] = int(r.get("epoch") or 0)
        r["_line"] = i
        r["_path"] = str(path)
    return rows


def build_units(kind: str | BenchmarkKind, rows: list[dict], bench_cfg: dict) -> list[dict]:
    """Judge tasks (without the judge) for completion rows: the kind's units."""
    k = get_kind(kind) if isinstance(kind, str) else kind
    return k.units(k.load(bench_cfg), rows, bench_cfg)


# --------------------------------------------------------------------------------------------
# Judges
# --------------------------------------------------------------------------------------------

def _cache_file(cache: str | None, judge: str, suffix: str) -> str | None:
    """``cache`` is a directory (one file per judge inside) or a ``.jsonl`` file path (the judge's
    files sit beside it, named after it)."""
    if not cache:
        return None
    p = Path(cache)
    if p.suffix == ".jsonl":
        return str(p.with_name(f"{p.stem}.{judge}{suffix}.jsonl"))
    return str(p / f"{judge}{suffix}.jsonl")


class SharedJudgeBackends(dict):
    """Judge backends shared by several ``judge_completions`` calls (one job judging a model on
    each of its benchmarks): each is made on first use and stays open for the next call."""

    def get_or_make(self, name: str, cfg: dict) -> Any:
        from ..io import stable_hash

        key = (name, stable_hash(cfg))
        if key not in self:
            from ..llm.registry import make_backend

            self[key] = make_backend(cfg)
        return self[key]


def shared_judge_backends() -> SharedJudgeBackends:
    return SharedJudgeBackends()


class Judge:
    """One configured judge. ``backend`` may be given (tests, or shared between benchmarks: then
    it is not closed here); otherwise built with make_backend."""

    def __init__(self, name: str, cfg: dict, cache: str | None = None, backend: Any = None):
        self.name = name
        self.owns_backend = backend is None
        self.cfg = {**judge_defaults(), **{k: v for k, v in cfg.items() if v is not None}}
        self.max_retries = int(self.cfg["parse_retries"])
        if self.max_retries < 0:
            raise ValueError(f"judge {name!r}: parse_retries must be >= 0")
        if backend is None:
            from ..llm.registry import make_backend

            backend = make_backend(cfg)
        self.raw_backend = backend
        mode = self.cfg["judge_mode"]
        if mode == "auto":
            from ..llm.registry import BACKENDS

            # a configured backend says what it can do; a backend handed in (tests) shows it
            known = BACKENDS.get(cfg.get("backend"))
            can = known.logprobs if known else hasattr(backend, "option_logprobs")
            mode = "logprob" if can else "generate"
        if mode not in ("generate", "logprob"):
            raise ValueError(f"judge {name!r}: judge_mode must be auto, generate or logprob, got {mode!r}")
        if mode == "logprob" and not hasattr(backend, "option_logprobs"):
            raise ValueError(f"judge {name!r}: judge_mode logprob needs a backend that scores log-probabilities")
        self.mode = mode
        self.calibration = self.cfg["calibration"]
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"judge {name!r}: calibration must be one of {list(CALIBRATIONS)}, "
                             f"got {self.calibration!r}")
        if self.calibration != "none" and mode != "logprob":
            raise ValueError(f"judge {name!r}: calibration {self.calibration!r} needs judge_mode logprob "
                             f"(an hf judge); this judge generates its verdicts")
        gen_cache = _cache_file(cache, name, "")
        if mode == "generate" and gen_cache:
            from ..llm.cache import CachedBackend

            self.backend = CachedBackend(backend, gen_cache)
        else:
            self.backend = backend
        lp_cache = _cache_file(cache, name, ".logprobs")
        self.lp_cache = AppendCache(lp_cache) if (mode == "logprob" and lp_cache) else None
        self.model_id = str(getattr(backend, "model_id", name))

    def format_for(self, kind: BenchmarkKind, bench_cfg: dict) -> str:
        """The judge format: the benchmark's ``judge_format``; a log-probability judge reads a
        label, so it keeps the benchmark's format only when the kind lists it in
        ``logprob_formats`` (the AHB's yes_no) and otherwise uses "label"."""
        if self.mode == "logprob":
            fmt = bench_cfg.get("judge_format")
            return fmt if fmt in kind.logprob_formats else "label"
        return kind.default_format(bench_cfg)

    # -- requests --------------------------------------------------------------------------
    def _request(self, key: str, content: str, attempt: int, schema: dict | None,
                 system: str | None = None) -> GenRequest:
        msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
        return GenRequest(key=key, messages=msgs,
                          max_new_tokens=int(self.cfg["max_new_tokens"]),
                          temperature=float(self.cfg["temperature"]), top_p=float(self.cfg["top_p"]),
                          seed=int(self.cfg["seed"]) + attempt, response_schema=schema)

    # -- generate mode ---------------------------------------------------------------------
    def _judge_generate(self, kind: BenchmarkKind, fmt: str, units: list[dict],
                        progress: Callable[[int], None] | None) -> list[dict]:
        schema = kind.response_schema(fmt)
        prompts = [kind.prompt(u, fmt) for u in units]
        systems = [kind.system_prompt(u, fmt) for u in units]
        out: list[dict] = [{} for _ in units]
        pending = list(range(len(units)))
        for attempt in range(self.max_retries + 1):
            if not pending:
                break
            reqs = [self._request(str(i), prompts[i], attempt, schema, systems[i]) for i in pending]
            results = self.backend.generate(reqs, progress=progress if attempt == 0 else None)
            still = []
            for i, res in zip(pending, results):
                v: Verdict | None = kind.parse(res.text, fmt) if res.ok else None
                ok = v is not None and v.score is not None
                out[i] = {"raw": res.text if res.text is not None else None, "attempts": attempt + 1,
                          "error": None if ok else
                          (res.error or f"finish reason {res.finish_reason}" if not res.ok else "unparseable verdict"),
                          "unparseable": bool(res.ok and not ok)}
                if ok:
                    out[i].update(score=v.score, fields=v.fields)
                else:
                    still.append(i)
            if still and attempt < self.max_retries:
                log.info("judge %s: %d unparseable verdict(s), asking again (attempt %d of %d)",
                         self.name, len(still), attempt + 2, self.max_retries + 1)
            pending = still
        for i in pending:
            out[i].update(score=None, fields=None)
            log.warning("judge %s: unit %s has no parseable verdict after %d attempt(s); stored as null",
                        self.name, units[i]["unit_id"], self.max_retries + 1)
        return out

    # -- logprob mode ----------------------------------------------------------------------
    def _option_logprobs(self, reqs: list[GenRequest], options: list[Sequence[str]]) -> list[list[float]]:
        keys = [stable_hash([self.model_id, r.settings(), list(o)], 32) for r, o in zip(reqs, options)]
        out: list[list[float] | None] = [None] * len(reqs)
        todo = []
        for i, k in enumerate(keys):
            rec = self.lp_cache.get(k) if self.lp_cache is not None else None
            if rec is not None:
                out[i] = rec["logprobs"]
            else:
                todo.append(i)
        batch = 64
        for s in range(0, len(todo), batch):
            idx = todo[s:s + batch]
            lps = self.raw_backend.option_logprobs([reqs[i] for i in idx], [list(options[i]) for i in idx])
            for i, lp in zip(idx, lps):
                lp = [float(x) for x in lp]
                out[i] = lp
                if self.lp_cache is not None and all(math.isfinite(x) for x in lp):
                    self.lp_cache.put(keys[i], {"logprobs": lp})
        return out  # type: ignore[return-value]

    @staticmethod
    def _argmax(options: Sequence[tuple[str, int]], lps: list[float]) -> int | None:
        if not lps or not all(math.isfinite(x) for x in lps):
            return None
        best = max(range(len(lps)), key=lambda k: (lps[k], -k))
        return options[best][1]

    def _judge_logprob(self, kind: BenchmarkKind, fmt: str, units: list[dict],
                       progress: Callable[[int], None] | None) -> list[dict]:
        fields: list[str | None] = list(kind.logprob_fields) if kind.logprob_fields else [None]
        calibrate = self.calibration == "empty_answer"
        reqs, opts, where = [], [], []
        empty_at: dict[str, int] = {}     # content-free prompt -> its request (shared by units)
        for i, u in enumerate(units):
            for f in fields:
                options = kind.label_options(fmt, f)
                labels = [lab for lab, _ in options]
                at = len(reqs)
                reqs.append(self._request(f"{i}:{f}", kind.prompt(u, fmt, f), 0, None))
                opts.append(labels)
                empty = None
                if calibrate:
                    text = kind.prompt({**u, "answer": ""}, fmt, f)
                    if text not in empty_at:
                        empty_at[text] = len(reqs)
                        reqs.append(self._request(f"empty:{f}", text, 0, None))
                        opts.append(labels)
                    empty = empty_at[text]
                where.append((i, f, options, at, empty))
        lps = self._option_logprobs(reqs, opts)
        labels_of: list[dict] = [{} for _ in units]
        raws: list[dict] = [{} for _ in units]
        probs: list[float | None] = [None] * len(units)
        for i, f, options, at, empty in where:
            lp = list(lps[at])
            if empty is None:
                raw = dict(zip(opts[at], lp))
            else:   # calibrated: keep the prompt's, the empty answer's and the difference's log-probs
                base = lps[empty]
                cal = [a - b for a, b in zip(lp, base)]
                raw = {"logprobs": dict(zip(opts[at], lp)), "empty_answer": dict(zip(opts[empty], base)),
                       "calibrated": dict(zip(opts[at], cal))}
                lp = cal
            val = self._argmax(options, lp)
            raws[i][f or "score"] = raw
            labels_of[i][f] = val
            if f is None and val is not None and len(lp) == 2:
                m = max(lp)
                pos = next(k for k, (_, v) in enumerate(options) if v == 1)
                probs[i] = math.exp(lp[pos] - m) / sum(math.exp(x - m) for x in lp)
        out = []
        for i in range(len(units)):
            v = kind.from_labels(labels_of[i])
            out.append({"raw": json.dumps(raws[i], sort_keys=True), "attempts": 1, "score": v.score,
                        "fields": v.fields, "prob": probs[i], "unparseable": False,
                        "error": None if v.score is not None else "non-finite label log-probabilities"})
        if progress:
            progress(len(units))
        return out

    def judge(self, kind: BenchmarkKind, fmt: str, units: list[dict],
              progress: Callable[[int], None] | None = None) -> list[dict]:
        if not units:
            return []
        if self.mode == "generate":
            return self._judge_generate(kind, fmt, units, progress)
        return self._judge_logprob(kind, fmt, units, progress)

    def close(self) -> None:
        if self.lp_cache is not None:
            self.lp_cache.close()
        if not self.owns_backend:
            return
        try:
            self.backend.close()
        except Exception:  # pragma: no cover - closing must not hide results
            log.debug("judge %s: backend close failed", self.name, exc_info=True)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------

def judge_completions(completions: str, benchmark: str, bench_cfg: dict, judges: dict[str, dict],
                      out: str, cache: str | None, *, backends: dict[str, Any] | None = None,
                      resources_dir: str | None = None, report: str | None = None) -> dict:
    """Judge every completion of one model on one benchmark with every judge in ``judges``
    ({name: resolved backend cfg}) and write one score line per judged unit to ``out``.

    ``backends`` ({judge name: Backend}) replaces make_backend (tests); a SharedJudgeBackends
    makes each judge's backend once for several calls. Returns a summary
    {"units", "null", "by_judge": {name: {"units", "null"}}}, written to ``report`` when given;
    for API judges each judge's entry adds ``api`` (the ledger beside its reply cache: requests
    sent, replies by kind, retries, requests in flight at a kill, over every run, interrupted
    ones included), tokens and estimated cost."""
    from tqdm.auto import tqdm

    kind = get_kind(bench_cfg.get("kind"))
    if kind.stage != "judge":
        raise ValueError(f"benchmark {benchmark!r}: kind {kind.name!r} is not judged (stage {kind.stage!r})")
    if not judges:
        raise ValueError(f"benchmark {benchmark!r}: no judges configured")
    rows = _completion_rows(completions)
    units = build_units(kind, rows, bench_cfg)
    lines: list[dict] = []
    summary: dict[str, Any] = {"units": 0, "null": 0, "by_judge": {}}
    for jname in sorted(judges):
        if isinstance(backends, SharedJudgeBackends):
            backend = backends.get_or_make(jname, judges[jname])
        else:
            backend = (backends or {}).get(jname)
        judge = Judge(jname, judges[jname], cache=cache, backend=backend)
        fmt = judge.format_for(kind, bench_cfg)
        try:
            todo = [u for u in units if not u["missing_completion"]]
            with tqdm(total=len(todo), desc=f"judge {jname} on {benchmark}", unit="verdict",
                      disable=None) as bar:
                verdicts = judge.judge(kind, fmt, todo, progress=bar.update)
        finally:
            judge.close()
        api = judge.backend.api_summary() if hasattr(judge.backend, "api_summary") else None
        vmap = {u["unit_id"]: v for u, v in zip(todo, verdicts)}
        n_null = 0
        for u in units:
            v = vmap.get(u["unit_id"]) or {"score": None, "raw": None, "fields": None, "attempts": 0,
                                            "error": "no completion to judge", "unparseable": False}
            n_null += v["score"] is None
            lines.append({
                "unit_id": f"{u['unit_id']}|{jname}", "item_id": u["item_id"], "epoch": u["epoch"],
                "dimension": u["dimension"], "combination": u["combination"], "judge": jname,
                "judge_model": judge.model_id, "score": v["score"], "raw": v.get("raw"),
                "fields": v.get("fields"), "weight": u["weight"], "prob": v.get("prob"),
                "attempts": v.get("attempts"), "error": v.get("error"),
                "unparseable": bool(v.get("unparseable")), "format": fmt,
                "truncated": bool(u.get("truncated")), **kind.unit_extra(u),
            })
        summary["by_judge"][jname] = {"units": len(units), "null": n_null}
        if api is not None:
            from ..llm.cache import spend

            summary["by_judge"][jname].update({"model": judge.model_id, "api": api, **spend(judges[jname], api)})
        summary["units"] += len(units)
        summary["null"] += n_null
        if n_null:
            log.warning("judge %s on %s: %d of %d unit(s) have no verdict (null)", jname, benchmark,
                        n_null, len(units))
    write_jsonl(out, lines)
    if report:
        atomic_write_json(report, summary)
    return summary
