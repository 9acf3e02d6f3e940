"""Instruction-tuning control data: question-answer pairs on the same animal-welfare themes,
generated through the same backends, cache and regeneration loop as the documents.

Each pair takes two requests: a question (resources/prompts/instruct_question.txt, filled with a
theme from instruct_themes.txt and a domain from the corpus grid) and an answer to it (the
question as the user turn, instruct_answer.txt as the system instruction).

instruct_data config keys:
    n                     int   pairs to generate (with match_welfare_tokens: the first round)
    generator             str   generators.<name> (resolved by the script into generator_cfg)
    seed                  int
    corpus                str   corpus whose grid domains and key phrases are used (default animal_welfare)
    answer_words          int   asked-for answer length (default 250)
    min_words             int   fewest words in a question and in an answer (default 1)
    max_attempts          int   requests per question/answer before it is dropped (default 3)
    match_welfare_tokens  bool  keep generating until the welfare-relevant token count of the
                                answers reaches that of corpus_documents (default false)
    max_n                 int   cap on pairs when matching (default 20 * n)
    allow_truncated       bool  accept replies cut off at the token limit (default false; the
                                offline demo's tiny random model needs true)

Welfare-relevant tokens (documented rule): whitespace-separated words of every sentence that
contains a welfare-lexicon term (WELFARE_LEXICON) or a key phrase of the corpus. Documents:
their text; instruct data: the assistant answers.
"""
from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Iterable

from ..documents.corpus import load_corpus_def, load_grid, read_list
from ..documents.generate import estimate_cost, open_backend, request_settings, run_with_regeneration
from ..io import atomic_write_json, iter_jsonl, stable_hash, write_jsonl
from ..llm.base import GenRequest, GenResult

WELFARE_LEXICON = [
    "animal", "animals", "welfare", "sentient", "sentience", "suffering", "suffer", "cruelty",
    "humane", "compassion", "compassionate", "livestock", "wildlife", "well-being", "wellbeing",
    "pain", "distress", "husbandry", "enrichment", "slaughter", "veterinary", "pets", "poultry",
]
_SENT = re.compile(r"(?<=[.!?])\s+|\n+")


def welfare_tokens(text: str, key_phrases: Iterable[str] = ()) -> int:
    """Words in sentences that contain a welfare-lexicon word or a corpus key phrase."""
    lex = re.compile(r"\b(" + "|".join(re.escape(w) for w in WELFARE_LEXICON) + r")\b", re.I)
    phrases = [p.lower() for p in key_phrases]
    n = 0
    for sent in _SENT.split(text):
        low = sent.lower()
        if lex.search(sent) or any(p in low for p in phrases):
            n += len(sent.split())
    return n


def corpus_welfare_tokens(paths: str | list[str], key_phrases: Iterable[str] = ()) -> int:
    paths = [paths] if isinstance(paths, str) else list(paths)
    kp = list(key_phrases)
    return sum(welfare_tokens(r.get("text") or "", kp) for p in paths for r in iter_jsonl(p))


def _pair_plan(i: int, seed: int, themes: list[str], domains: list[str]) -> dict:
    rng = random.Random(f"doctune-instruct:{seed}:{i}")
    return {"id": f"instruct-{i:05d}", "theme": themes[i % len(themes)], "domain": rng.choice(domains),
            "seed": int(stable_hash(["doctune-instruct", seed, i], 8), 16) & 0x7FFFFFFF}


def load_prompts(resources_dir: str | Path, instruct_cfg: dict) -> tuple[dict, list[str], list[str], str, str]:
    """(corpus definition, grid domains, themes, question template, answer system prompt): what
    the question and answer requests are made of (also read by doctune.workflow.plan)."""
    rd = Path(resources_dir)
    cdef = load_corpus_def(rd, instruct_cfg.get("corpus") or "animal_welfare")
    domains = load_grid(rd, cdef)["domains"]
    themes = read_list(rd / "prompts" / "instruct_themes.txt")
    q_tpl = (rd / "prompts" / "instruct_question.txt").read_text(encoding="utf-8").strip()
    a_sys = (rd / "prompts" / "instruct_answer.txt").read_text(encoding="utf-8").strip().format(
        answer_words=int(instruct_cfg.get("answer_words", 250)))
    return cdef, domains, themes, q_tpl, a_sys


def generate_instruct_data(out: str, report: str, generator_cfg: dict, instruct_cfg: dict,
                           resources_dir: str, cache: str, corpus_documents: str | list[str] | None = None) -> dict:
    known = {"n", "generator", "seed", "corpus", "answer_words", "min_words", "max_attempts",
             "match_welfare_tokens", "max_n", "allow_truncated"}
    unknown = set(instruct_cfg) - known
    if unknown:
        raise ValueError(f"instruct_data: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    n = int(instruct_cfg.get("n", 0))
    seed = int(instruct_cfg.get("seed", 0))
    min_words = int(instruct_cfg.get("min_words", 1))
    max_attempts = int(instruct_cfg.get("max_attempts", 3))
    match = bool(instruct_cfg.get("match_welfare_tokens", False))
    max_n = int(instruct_cfg.get("max_n") or 20 * max(n, 1))
    allow_truncated = bool(instruct_cfg.get("allow_truncated", False))
    if match and not corpus_documents:
        raise ValueError("instruct_data.match_welfare_tokens is true but no corpus documents were given")
    cdef, domains, themes, q_tpl, a_sys = load_prompts(resources_dir, instruct_cfg)
    settings = request_settings(generator_cfg)
    kp = cdef["key_phrases"]
    target = corpus_welfare_tokens(corpus_documents, kp) if corpus_documents else None

    def ok_words(_plan: dict, res: GenResult):
        return (len((res.text or "").split()) >= min_words), "too_short"

    rows: list[dict] = []
    totals: dict[str, Any] = {"requests": 0, "cached_results": 0, "regenerations": 0, "api_retries": 0,
                              "tokens_in": 0, "tokens_out": 0, "rejected_by_reason": {}, "dropped": 0}
    planned = 0
    have = 0
    backend = open_backend(generator_cfg, cache)
    try:
        batch = n
        while batch > 0:
            plans = [_pair_plan(i, seed, themes, domains) for i in range(planned, planned + batch)]
            planned += batch
            rq = run_with_regeneration(
                backend, plans,
                lambda p, a: GenRequest(key=p["id"], messages=[{"role": "user", "content": q_tpl.format(
                    theme=p["theme"], domain=p["domain"])}], seed=p["seed"] + 7919 * (a - 1), **settings),
                ok_words, max_attempts, "instruct questions", allow_truncated)
            qplans = [p for p in plans if p["id"] in rq["accepted"]]
            ra = run_with_regeneration(
                backend, qplans,
                lambda p, a: GenRequest(key=p["id"], messages=[
                    {"role": "system", "content": a_sys},
                    {"role": "user", "content": rq["accepted"][p["id"]].text.strip()}],
                    seed=p["seed"] + 1 + 7919 * (a - 1), **settings),
                ok_words, max_attempts, "instruct answers", allow_truncated)
            for r in (rq, ra):
                for k in ("requests", "regenerations", "api_retries", "tokens_in", "tokens_out"):
                    totals[k] += r[k]
                totals["cached_results"] += r["cached"]
                totals["dropped"] += len(r["dropped"])
                for reason, c in r["rejected_by_reason"].items():
                    totals["rejected_by_reason"][reason] = totals["rejected_by_reason"].get(reason, 0) + c
            for p in qplans:
                if p["id"] not in ra["accepted"]:
                    continue
                q, a = rq["accepted"][p["id"]], ra["accepted"][p["id"]]
                wt = welfare_tokens(a.text, kp)
                have += wt
                rows.append({"id": p["id"], "messages": [{"role": "user", "content": q.text.strip()},
                                                         {"role": "assistant", "content": a.text.strip()}],
                             "theme": p["theme"], "domain": p["domain"], "model": a.model,
                             "welfare_tokens": wt})
            if not match or have >= target or planned >= max_n:
                break
            per_pair = have / max(len(rows), 1)
            need = (target - have) / per_pair if per_pair > 0 else batch
            batch = max(1, min(max_n - planned, int(need * 1.1) + 1))
    finally:
        backend.close()
    write_jsonl(out, rows)
    rep = {"requested": planned, "generated": len(rows), **totals, "retries": totals["regenerations"] + totals["api_retries"],
           "model": backend.model_id,
           "estimated_cost_usd": estimate_cost(generator_cfg, totals["tokens_in"], totals["tokens_out"]),
           "welfare_token_rule": "words of sentences containing a welfare-lexicon word or a corpus key phrase",
           "welfare_tokens_instruct": have, "welfare_tokens_documents": target,
           "match_welfare_tokens": match,
           "matched": (have >= target) if (match and target is not None) else None}
    atomic_write_json(report, rep)
    return rep
