"""Document validation: length bounds, banned patterns (explicit moral instruction, or for the
control corpus any mention of animals/welfare), key-phrase presence, near-duplicates.

Validation config keys (`validation:` in the config):
    min_words                int    fewest whitespace-separated words (default 1)
    max_words                int    most words (default: no bound)
    require_key_phrases      int    fewest total occurrences of the corpus key phrases (default 0);
                                    matching ignores case, punctuation and spacing
    near_duplicate_threshold float  estimated Jaccard similarity of word 5-gram shingles at or
                                    above which a document is a near-duplicate of an earlier
                                    accepted one (default 0.9; 1.0 or above turns it off).
                                    Detection uses MinHash with LSH (16 bands x 4 rows): reliable
                                    for thresholds >= 0.6
    max_attempts             int    requests per document before it is dropped (default 3)
    allow_truncated          bool   accept replies cut off at the token limit (finish reason
                                    "length") if they pass the other checks (default false; the
                                    offline demo's tiny random model never stops on its own)
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np

_MERSENNE = (1 << 61) - 1


def words(text: str) -> list[str]:
    return text.split()


def _norm(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def count_key_phrases(text: str, phrases: list[str]) -> dict[str, int]:
    t = _norm(text)
    return {p: len(re.findall(r"(?<= )" + re.escape(_norm(p).strip()) + r"(?= )", t)) for p in phrases}


@dataclass
class Verdict:
    ok: bool
    reason: str | None = None      # too_short, too_long, banned_pattern, missing_key_phrases, near_duplicate
    detail: str | None = None


class NearDuplicateIndex:
    """MinHash (64 permutations) over word 5-gram shingles, LSH with 16 bands of 4 rows; the
    exact Jaccard of shingle sets decides among LSH candidates."""

    def __init__(self, threshold: float, num_perm: int = 64, bands: int = 16, shingle: int = 5):
        self.threshold = float(threshold)
        self.shingle = shingle
        self.bands, self.rows = bands, num_perm // bands
        rng = np.random.default_rng(0x5EED)
        self.a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 31, size=num_perm, dtype=np.uint64)
        self.buckets: list[dict[bytes, list[int]]] = [dict() for _ in range(bands)]
        self.sets: list[set[int]] = []
        self.ids: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.threshold < 1.0

    def shingles(self, text: str) -> set[int]:
        w = re.findall(r"\w+", text.lower())
        k = self.shingle
        grams = [" ".join(w[i:i + k]) for i in range(max(1, len(w) - k + 1))] if w else []
        return {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
                for g in grams}

    def _signature(self, sh: set[int]) -> np.ndarray:
        x = np.fromiter(sh, dtype=np.uint64, count=len(sh))
        h = (x[None, :] * self.a[:, None] + self.b[:, None]) % np.uint64(_MERSENNE)
        return h.min(axis=1)

    def query(self, text: str) -> tuple[str | None, float, set[int], np.ndarray | None]:
        sh = self.shingles(text)
        if not sh or not self.enabled:
            return None, 0.0, sh, None
        sig = self._signature(sh)
        cands: set[int] = set()
        for band in range(self.bands):
            key = sig[band * self.rows:(band + 1) * self.rows].tobytes()
            cands.update(self.buckets[band].get(key, ()))
        best, best_j = None, 0.0
        for c in sorted(cands):
            other = self.sets[c]
            j = len(sh & other) / len(sh | other)
            if j > best_j:
                best, best_j = c, j
        if best is not None and best_j >= self.threshold:
            return self.ids[best], best_j, sh, sig
        return None, best_j, sh, sig

    def add(self, doc_id: str, sh: set[int], sig: np.ndarray | None) -> None:
        if sig is None:
            return
        i = len(self.sets)
        self.sets.append(sh)
        self.ids.append(doc_id)
        for band in range(self.bands):
            key = sig[band * self.rows:(band + 1) * self.rows].tobytes()
            self.buckets[band].setdefault(key, []).append(i)


class Validator:
    """Checks documents in order; accepted ones join the near-duplicate index."""

    def __init__(self, validation_cfg: dict, corpus_def: dict | None):
        v = validation_cfg or {}
        known = {"min_words", "max_words", "require_key_phrases", "near_duplicate_threshold", "max_attempts",
                 "allow_truncated"}
        unknown = set(v) - known
        if unknown:
            raise ValueError(f"validation: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        self.min_words = int(v.get("min_words", 1))
        self.max_words = v.get("max_words")
        self.require = int(v.get("require_key_phrases", 0))
        self.max_attempts = int(v.get("max_attempts", 3))
        self.allow_truncated = bool(v.get("allow_truncated", False))
        if self.max_attempts < 1:
            raise ValueError("validation.max_attempts must be >= 1")
        cd = corpus_def or {}
        self.key_phrases = list(cd.get("key_phrases") or [])
        if self.require and not self.key_phrases:
            raise ValueError("validation.require_key_phrases > 0 but the corpus definition has no key_phrases")
        self.banned = []
        for i, pat in enumerate(cd.get("banned_patterns") or []):
            try:
                self.banned.append(re.compile(pat, re.IGNORECASE))
            except re.error as exc:
                raise ValueError(f"{cd.get('_source', 'corpus')}: banned_patterns[{i}] {pat!r}: {exc}") from None
        self.index = NearDuplicateIndex(float(v.get("near_duplicate_threshold", 0.9)))

    def check(self, doc_id: str, text: str) -> Verdict:
        n = len(words(text))
        if n < self.min_words:
            return Verdict(False, "too_short", f"{n} words < min_words {self.min_words}")
        if self.max_words is not None and n > int(self.max_words):
            return Verdict(False, "too_long", f"{n} words > max_words {self.max_words}")
        for rx in self.banned:
            m = rx.search(text)
            if m:
                return Verdict(False, "banned_pattern", f"{rx.pattern!r} matched {m.group(0)!r}")
        if self.require:
            total = sum(count_key_phrases(text, self.key_phrases).values())
            if total < self.require:
                return Verdict(False, "missing_key_phrases",
                               f"{total} key-phrase occurrences < require_key_phrases {self.require}")
        dup, j, sh, sig = self.index.query(text)
        if dup is not None:
            return Verdict(False, "near_duplicate", f"Jaccard {j:.3f} with {dup}")
        self.index.add(doc_id, sh, sig)
        return Verdict(True)
