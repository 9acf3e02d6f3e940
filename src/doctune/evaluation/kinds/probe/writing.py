"""Model-written probe items for any corpus (rule ``probes``): a manipulation check for a corpus
nobody has written probes for.

For a probe benchmark with ``write: {generator, n, seed, max_attempts, max_length_ratio,
prompt_template}`` and ``corpus: NAME``, item i is planned in a domain of the corpus's grid (an
even, seeded walk: every domain once per round, a new order each round, so growing ``n`` keeps the
first items) and asked for with the prompt template (the kind's ``prompts/write.txt``, or the file
``write.prompt_template`` names), filled from the corpus definition: its topic, guidance and key phrases. The reply must be
a JSON object ``{"prompt", "preferred", "dispreferred"}`` (structured output where the backend
supports it). An item is kept when (``validate_item``):

* all three texts are present (``missing_field``; ``not_json`` when the reply is no JSON object);
* the answers' word counts are within ``max_length_ratio`` of each other (``length_ratio``);
* the preferred answer carries the corpus's stakes: it matches at least one of the definition's
  ``stakes`` terms (case-insensitive word prefixes; default its key phrases) and more of them than
  the dispreferred answer (``no_stakes``);
* it shares no sentence of six or more words with the corpus's documents (``shared_sentence``) and
  its prompt is not the prompt of an earlier item (``duplicate_prompt``).

A rejected item is asked again with a new seed (so the reply cache does not return the same
reply) up to ``max_attempts`` times, then dropped and counted. Every reply goes through the reply
cache (``CachedBackend``): a rerun, or a run killed half-way, pays for no reply twice, and a
larger ``n`` asks only for the new items. Output: the items (``items.py`` format, with ``domain``,
``model`` and ``attempt``) and a report (requested, kept, rejected by reason, dropped ids,
requests, retries, tokens and cost).
"""
from __future__ import annotations

import random
import re
import string
from pathlib import Path
from typing import Any

from ....io import DataError, atomic_write_json, read_jsonl, write_jsonl
from ....llm.base import GenRequest, GenResult
from ..common import extract_json

ITEM_SCHEMA = {
    "type": "object",
    "properties": {"prompt": {"type": "string"}, "preferred": {"type": "string"},
                   "dispreferred": {"type": "string"}},
    "required": ["prompt", "preferred", "dispreferred"],
}
TEMPLATE_FIELDS = {"topic", "guidance", "key_phrases", "domain", "corpus", "description"}
MIN_SHARED_WORDS = 6
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")


def probe_specs(benchmark: str, domains: list[str], n: int, seed: int) -> list[dict]:
    """The planned items: id, index, domain and request seed; item i depends only on i, so the
    first items stay the same when n grows. Round r visits every domain once in its own order."""
    specs = []
    for i in range(int(n)):
        rnd, pos = divmod(i, len(domains))
        order = list(domains)
        random.Random(f"{seed}:{rnd}").shuffle(order)
        specs.append({"id": f"{benchmark}-{i + 1:04d}", "index": i, "domain": order[pos],
                      "seed": int(seed) * 1_000_003 + i})
    return specs


def render_request(template: str, corpus_def: dict, domain: str) -> str:
    fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    bad = fields - TEMPLATE_FIELDS
    if bad:
        raise DataError(f"probe prompt template: unknown field(s) {sorted(bad)}; allowed: {sorted(TEMPLATE_FIELDS)}")
    cell = {"domain": domain, "institution": "an organisation", "doc_type": "document", "reasoning": "evidence"}
    ctx = {"topic": corpus_def["topic"].strip().format(**cell), "domain": domain, "corpus": corpus_def["name"],
           "description": corpus_def.get("description") or "",
           "guidance": "\n".join(f"- {g.strip()}" for g in corpus_def.get("guidance") or []) or "-",
           "key_phrases": ", ".join(f'"{k}"' for k in corpus_def.get("key_phrases") or []) or "(none)"}
    return template.format(**ctx).strip()


def parse_reply(text: str | None) -> dict | None:
    """The JSON object of a reply (bare, fenced, or embedded in prose); None when there is none."""
    obj = extract_json(text)
    return obj if isinstance(obj, dict) else None


def _norm_sentence(s: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", s.lower()))


def sentences(text: str) -> set[str]:
    """Normalised sentences of at least MIN_SHARED_WORDS words."""
    out = set()
    for s in _SENTENCE.split(text or ""):
        n = _norm_sentence(s)
        if len(n.split()) >= MIN_SHARED_WORDS:
            out.add(n)
    return out


def stakes_patterns(corpus_def: dict) -> list[re.Pattern]:
    terms = corpus_def.get("stakes") or corpus_def.get("key_phrases") or []
    return [re.compile(r"\b" + re.escape(t.strip()), re.I) for t in terms if t.strip()]


def stakes_hits(text: str, patterns: list[re.Pattern]) -> int:
    return sum(len(p.findall(text)) for p in patterns)


def validate_item(obj: dict | None, patterns: list[re.Pattern], doc_sentences: set[str],
                  max_length_ratio: float, seen_prompts: set[str]) -> tuple[bool, str | None]:
    if obj is None:
        return False, "not_json"
    for k in ("prompt", "preferred", "dispreferred"):
        if not isinstance(obj.get(k), str) or not obj[k].strip():
            return False, "missing_field"
    a, b = len(obj["preferred"].split()), len(obj["dispreferred"].split())
    if max(a, b) > max_length_ratio * min(a, b):
        return False, "length_ratio"
    hp, hd = stakes_hits(obj["preferred"], patterns), stakes_hits(obj["dispreferred"], patterns)
    if hp < 1 or hp <= hd:
        return False, "no_stakes"
    if any(sentences(obj[k]) & doc_sentences for k in ("prompt", "preferred", "dispreferred")):
        return False, "shared_sentence"
    if _norm_sentence(obj["prompt"]) in seen_prompts:
        return False, "duplicate_prompt"
    return True, None


def write_probes(benchmark: str, write_cfg: dict, corpus_def: dict, domains: list[str], documents: str | None,
                 template: str, generator_cfg: dict, out: str, report: str, cache: str) -> dict:
    """Write the items of one model-written probe benchmark and its report; returns the report."""
    from ....documents.generate import open_backend, request_settings, run_with_regeneration, spend_report

    specs = probe_specs(benchmark, domains, write_cfg["n"], write_cfg.get("seed", 0))
    doc_sentences: set[str] = set()
    if documents:
        for i, d in enumerate(read_jsonl(documents), start=1):
            if not isinstance(d.get("text"), str):
                raise DataError(f"{documents}:{i}: document has no 'text'")
            doc_sentences |= sentences(d["text"])
    patterns = stakes_patterns(corpus_def)
    if not patterns:
        raise DataError(f"{corpus_def.get('_source')}: model-written probes need the corpus's 'stakes' "
                        f"(or key_phrases) to check that a preferred answer carries them")
    ratio = float(write_cfg.get("max_length_ratio", 1.25))
    settings = request_settings(generator_cfg)
    seen: set[str] = set()
    parsed: dict[str, dict] = {}
    attempt_of: dict[str, int] = {}

    def make_request(spec: dict, attempt: int) -> GenRequest:
        attempt_of[spec["id"]] = attempt
        return GenRequest(key=spec["id"], messages=[{"role": "user", "content": render_request(
            template, corpus_def, spec["domain"])}], seed=spec["seed"] + 7_919 * (attempt - 1),
            response_schema=ITEM_SCHEMA, **settings)

    def accept(spec: dict, res: GenResult) -> tuple[bool, str | None]:
        obj = parse_reply(res.text)
        ok, why = validate_item(obj, patterns, doc_sentences, ratio, seen)
        if ok:
            seen.add(_norm_sentence(obj["prompt"]))
            parsed[spec["id"]] = obj
        return ok, why

    backend = open_backend(generator_cfg, cache)
    try:
        r = run_with_regeneration(backend, specs, make_request, accept, int(write_cfg.get("max_attempts", 3)),
                                  f"probes {benchmark}")
    finally:
        backend.close()
    api = backend.api_summary() if hasattr(backend, "api_summary") else None
    items = []
    for s in specs:
        if s["id"] in parsed:
            obj, res = parsed[s["id"]], r["accepted"][s["id"]]
            items.append({"id": s["id"], "domain": s["domain"], "prompt": obj["prompt"].strip(),
                          "preferred": obj["preferred"].strip(), "dispreferred": obj["dispreferred"].strip(),
                          "model": res.model or backend.model_id, "attempt": attempt_of.get(s["id"])})
    if not items:
        raise DataError(f"probes {benchmark}: no item passed validation "
                        f"(rejected: {r['rejected_by_reason']}); see {report}")
    rep: dict[str, Any] = {
        "benchmark": benchmark, "corpus": corpus_def["name"], "requested": len(specs), "kept": len(items),
        "dropped": len(r["dropped"]), "dropped_ids": r["dropped"], "rejected_by_reason": r["rejected_by_reason"],
        "requests": r["requests"], "cached_results": r["cached"], "regenerations": r["regenerations"],
        "document_sentences_checked": len(doc_sentences), "max_length_ratio": ratio,
        "stakes": [p.pattern for p in patterns], "model": backend.model_id,
        "generator": {k: v for k, v in generator_cfg.items() if k != "spec"},
    }
    rep.update(spend_report(generator_cfg, r, api, len(items)))
    write_jsonl(out, items)
    atomic_write_json(report, rep)
    return rep


PROMPTS = Path(__file__).resolve().parent / "prompts"


def template_file(write_cfg: dict) -> Path:
    """The request template: ``write.prompt_template`` (a file) or this kind's prompts/write.txt."""
    return Path(write_cfg.get("prompt_template") or PROMPTS / "write.txt")


def load_prompt_template(write_cfg: dict) -> str:
    p = template_file(write_cfg)
    if not p.is_file():
        raise DataError(f"probe prompt template {p} not found (write.prompt_template)")
    return p.read_text(encoding="utf-8")
