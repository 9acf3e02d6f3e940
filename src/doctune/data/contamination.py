"""The contamination guard: do the texts a model trains on (a corpus's documents, the instruct
data) or is probed with (probe sets) contain benchmark items or their close paraphrases?

Two measures per (text, benchmark item), both on lower-cased words of any script (a character is a
word in scripts written without spaces: Han, kana, Thai, Tibetan):

* **n-gram overlap**: the fraction of the item's distinct word n-grams (``contamination.ngram``
  words; an item shorter than that is one n-gram of all its words) that occur in the text. A copy
  scores 1; flagged at ``ngram_threshold`` or more.
* **near-duplicate**: the fraction of the item's distinct content words (stop words left out,
  a light suffix stemming so "rabbits"/"rabbit" and "keeps"/"keep" match) found together in one
  window of the text twice the item's length (windows overlap by half). A paraphrase keeps most
  of what a question is about while it reorders and rewords the rest; flagged at
  ``near_duplicate_threshold`` or more, for items with at least ``min_content_words`` content words.
  Candidates are found first from the whole text (its content words, a sparse product), so only
  items that could reach the threshold are windowed.

Output ``results/contamination/SOURCE.tsv`` (COLUMNS): one row per flagged (text, item) pair,
and one ``row_type=benchmark`` row per benchmark with the counts (texts checked, texts flagged,
items hit) or, when its items could not be read, status ``unreadable`` and why (never skipped
silently). With ``contamination.filter: true`` the flagged texts of a training source are dropped
(``filter_texts``) and their ids recorded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import regex   # Unicode script classes (a transformers dependency)

from ..io import DataError, atomic_write_text, iter_jsonl

COLUMNS = ["row_type", "source", "benchmark", "text_id", "item_id", "ngram_overlap", "near_duplicate",
           "flagged_by", "n_texts", "n_flagged", "n_items", "n_items_hit", "status", "note", "item_text"]

# words of any script (letters with their combining marks, digits); scripts written without spaces
# (Han, kana, Thai, Tibetan) count one character as a word, so their n-grams are character n-grams
_UNSPACED = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Tibetan}"
_WORD = regex.compile(rf"[{_UNSPACED}]|(?:(?![{_UNSPACED}])[\p{{L}}\p{{M}}\p{{N}}])+")
# function words: not what an item is about
STOP = frozenset("""a about above after again against all am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more most my
myself no nor not now of off on once only or other our ours ourselves out over own same she should so some
such than that the their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your yours yourself
yourselves also may might must shall one two get got make made""".split())


def words(text: str) -> list[str]:
    return _WORD.findall(str(text).lower())


def stem(w: str) -> str:
    """A light English suffix stemmer (enough to match inflections of the same word)."""
    if not w.isascii():
        return w
    for suf in ("ingly", "edly", "ing", "ed", "es", "ly", "s"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            return w[: -len(suf)]
    return w


def content(ws: Iterable[str]) -> list[str]:
    return [stem(w) for w in ws if w not in STOP and (len(w) > 2 or not w.isascii())]


def ngrams(ws: list[str], n: int) -> set[tuple[str, ...]]:
    if len(ws) < n:
        return {tuple(ws)} if ws else set()
    return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}


@dataclass
class Item:
    benchmark: str
    item_id: str
    text: str
    n_words: int
    grams: set
    content: frozenset
    n_content: int          # content words with repeats: the near-duplicate window is twice this


def build_items(benchmarks: dict[str, list[tuple[str, str]]], n: int) -> list[Item]:
    out = []
    for bench, items in benchmarks.items():
        for item_id, text in items:
            ws = words(text)
            if ws:
                cw = content(ws)
                out.append(Item(bench, str(item_id), text, len(ws), ngrams(ws, n), frozenset(cw), len(cw)))
    return out


def _windows(cw: list[str], size: int) -> Iterable[set[str]]:
    step = max(1, size // 2)
    if len(cw) <= size:
        yield set(cw)
        return
    for i in range(0, len(cw) - size + step, step):
        yield set(cw[i:i + size])


def check_texts(texts: list[tuple[str, str]], items: list[Item], cfg: dict) -> list[dict]:
    """Flagged (text, item) pairs: ``{text_id, benchmark, item_id, ngram_overlap, near_duplicate,
    flagged_by}``; cfg holds the thresholds (``contamination`` of the config)."""
    import numpy as np
    from scipy import sparse

    n = int(cfg["ngram"])
    t_ng, t_nd, min_cw = float(cfg["ngram_threshold"]), float(cfg["near_duplicate_threshold"]), int(cfg["min_content_words"])
    gram_index: dict[tuple, list[int]] = {}
    for k, it in enumerate(items):
        for g in it.grams:
            gram_index.setdefault(g, []).append(k)
    nd_items = [k for k, it in enumerate(items) if len(it.content) >= min_cw]
    vocab = {w: j for j, w in enumerate(sorted({w for k in nd_items for w in items[k].content}))}
    rows, cols = [], []
    for r, k in enumerate(nd_items):
        for w in items[k].content:
            rows.append(r)
            cols.append(vocab[w])
    mat = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(nd_items), len(vocab)))
    sizes = np.array([len(items[k].content) for k in nd_items], dtype=float)
    short = [k for k, it in enumerate(items) if it.n_words < n]
    out = []
    for text_id, text in texts:
        ws = words(text)
        hits: dict[int, int] = {}
        if len(ws) >= n:
            for g in {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}:
                for k in gram_index.get(g, ()):
                    hits[k] = hits.get(k, 0) + 1
        for k in short:   # items shorter than n words: the whole item
            g = next(iter(items[k].grams))
            if any(tuple(ws[i:i + len(g)]) == g for i in range(len(ws) - len(g) + 1)):
                hits[k] = 1
        overlap = {k: h / max(1, len(items[k].grams)) for k, h in hits.items()}
        near: dict[int, float] = {}
        if nd_items:
            cw = content(ws)
            present = [vocab[w] for w in set(cw) if w in vocab]
            if present:
                v = np.zeros(len(vocab))
                v[present] = 1.0
                whole = mat @ v / sizes
                for r in np.nonzero(whole >= t_nd)[0]:
                    k = nd_items[r]
                    c = items[k].content
                    best = max(len(c & win) for win in _windows(cw, 2 * max(1, items[k].n_content)))
                    near[k] = best / len(c)
        for k in set(overlap) | set(near):
            o, d = overlap.get(k, 0.0), near.get(k, 0.0)
            by = [name for name, hit in (("ngram", o >= t_ng), ("near_duplicate", d >= t_nd)) if hit]
            if by:
                out.append({"text_id": text_id, "benchmark": items[k].benchmark, "item_id": items[k].item_id,
                            "ngram_overlap": round(o, 4), "near_duplicate": round(d, 4), "flagged_by": "+".join(by),
                            "item_text": items[k].text[:200]})
    return sorted(out, key=lambda r: (r["benchmark"], r["item_id"], r["text_id"]))


# ----------------------------------------------------------------------------- sources
def read_source(path: str, kind: str) -> list[tuple[str, str]]:
    """(id, text) of each record of a training or probe file: documents (``text``), chat data
    (``messages``: every turn's content), probe items (prompt and answers)."""
    out = []
    for i, rec in enumerate(iter_jsonl(path), start=1):
        rid = str(rec.get("id", f"{i}"))
        if kind == "documents":
            text = rec.get("text")
        elif kind == "chat":
            msgs = rec.get("messages") or []
            text = "\n".join(str(m.get("content", "")) for m in msgs if isinstance(m, dict)) if msgs else \
                "\n".join(str(rec.get(k, "")) for k in ("instruction", "input", "output"))
        elif kind == "probe":
            dis = rec.get("dispreferred")
            text = "\n".join([str(rec.get("prompt", "")), str(rec.get("preferred", "")),
                              *(dis if isinstance(dis, list) else [str(dis or "")])])
        else:
            raise ValueError(f"unknown source kind {kind!r}")
        if not isinstance(text, str):
            raise DataError(f"{path}:{i}: no text to check (record {rid!r})")
        out.append((rid, text))
    return out


def benchmark_items(benchmarks: dict[str, dict]) -> tuple[dict[str, list[tuple[str, str]]], dict[str, str]]:
    """({benchmark: [(item id, text)]}, {benchmark: why it could not be read}) from each benchmark
    kind's ``item_texts`` (a hub dataset is read when it is cached; one that cannot be read is
    reported, not skipped)."""
    from ..evaluation.kinds import get_kind

    ok, bad = {}, {}
    for name, b in benchmarks.items():
        try:
            ok[name] = get_kind(b["kind"]).item_texts(b)
        except Exception as exc:   # noqa: BLE001  (reported per benchmark in the table and the summary)
            bad[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return ok, bad


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("\t", " ").replace("\n", " ")


def run_check(source: str, path: str, kind: str, benchmarks: dict[str, dict], cfg: dict, out_tsv: str,
              skip: Iterable[str] = ()) -> list[dict]:
    """Check one source file against every benchmark (but those in ``skip``: a probe set is not
    compared with itself); write the table (module docstring) and return its rows."""
    texts = read_source(path, kind)
    readable, unreadable = benchmark_items({k: v for k, v in benchmarks.items() if k not in set(skip)})
    items = build_items(readable, int(cfg["ngram"]))
    flagged = check_texts(texts, items, cfg)
    rows: list[dict] = []
    for bench in [b for b in benchmarks if b not in set(skip)]:
        if bench in unreadable:
            rows.append({"row_type": "benchmark", "source": source, "benchmark": bench, "n_texts": len(texts),
                         "status": "unreadable", "note": f"its items could not be read: {unreadable[bench]}"})
            continue
        mine = [r for r in flagged if r["benchmark"] == bench]
        rows.append({"row_type": "benchmark", "source": source, "benchmark": bench, "n_texts": len(texts),
                     "n_flagged": len({r["text_id"] for r in mine}), "n_items": len(readable[bench]),
                     "n_items_hit": len({r["item_id"] for r in mine}), "status": "ok",
                     "note": (f"{cfg['ngram']}-gram overlap >= {cfg['ngram_threshold']} or content-word "
                              f"containment >= {cfg['near_duplicate_threshold']}")})
    rows += [{"row_type": "pair", "source": source, "status": "flagged", **r} for r in flagged]
    lines = ["\t".join(COLUMNS)] + ["\t".join(_fmt(r.get(c)) for c in COLUMNS) for r in rows]
    atomic_write_text(out_tsv, "\n".join(lines) + "\n")
    return rows


def read_table(path: str) -> list[dict]:
    import csv

    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    for r in rows:
        for k in ("n_texts", "n_flagged", "n_items", "n_items_hit"):
            r[k] = int(r[k]) if r.get(k) not in (None, "") else None
        for k in ("ngram_overlap", "near_duplicate"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else None
        for k, v in list(r.items()):
            if v == "":
                r[k] = None
    return rows


def filter_texts(path: str, table: str, out: str, dropped_json: str) -> dict:
    """Write the records of ``path`` whose id the contamination table did not flag; record the
    dropped ids (and what they matched) in ``dropped_json``. Returns that record."""
    import json

    from ..io import write_jsonl

    flagged: dict[str, list[str]] = {}
    for r in read_table(table):
        if r["row_type"] == "pair":
            flagged.setdefault(r["text_id"], []).append(f"{r['benchmark']}:{r['item_id']}")
    kept, dropped = [], []
    for i, rec in enumerate(iter_jsonl(path), start=1):
        rid = str(rec.get("id", f"{i}"))
        (dropped if rid in flagged else kept).append(rid if rid in flagged else rec)
    write_jsonl(out, kept)
    report = {"source": path, "table": table, "kept": len(kept), "dropped": len(dropped),
              "dropped_ids": {d: flagged[d] for d in dropped}}
    atomic_write_text(dropped_json, json.dumps(report, indent=1) + "\n")
    return report


def summary_rows(tables: dict[str, str], filtered: dict[str, str] | None = None) -> list[dict]:
    """The summary's rows: per source x benchmark the texts flagged (value) of those checked (n),
    or ``missing`` for a benchmark whose items could not be read."""
    import json
    from pathlib import Path

    out = []
    for source, path in tables.items():
        dropped = None
        if filtered and source in filtered and Path(filtered[source]).exists():
            dropped = json.loads(Path(filtered[source]).read_text()).get("dropped")
        for r in read_table(path):
            if r["row_type"] != "benchmark":
                continue
            ok = r["status"] == "ok"
            note = r.get("note") or ""
            if ok:
                note = f"{r['n_items_hit']} of {r['n_items']} items hit; {note}"
                if dropped is not None:
                    note += f"; filter: {dropped} text(s) of {source} dropped before training"
            out.append({"model": f"contamination:{source}", "benchmark": r["benchmark"],
                        "metric": "contamination:texts_flagged", "value": r["n_flagged"] if ok else None,
                        "n": r["n_texts"], "status": "ok" if ok else "missing", "note": note,
                        "primary": True})
    return out
