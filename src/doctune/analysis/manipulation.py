"""The manipulation check: did training on the documents move each document arm toward its own
corpus's content, and only toward it? Judge-free: it compares probe margins (``kind: probe``;
per-token log-likelihood of the preferred minus the dispreferred answer, per item).

Pairs (``manipulation_pairs``): each document arm and its matched control (another document arm
with the same base model), each with the probe benchmark of its corpus (``benchmarks.NAME.corpus``).
Per pair, four paired comparisons on the shared probe items (``doctune.analysis.stats.compare_one``: mean
difference, bootstrap CI, paired permutation p), Holm-corrected together over the whole check:

* ``own``: arm - control on the arm's probe (the intervention took if this is > 0);
* ``other``: arm - control on the control's probe (< 0: the control moved toward its own content,
  the double dissociation; > 0: the arm moved on content it was not trained on);
* ``arm_vs_base`` / ``control_vs_base``: each against the untrained base model on its own probe.

Each probe is also checked against its corpus's generated documents: the number of its items that
share a run of ``OVERLAP_WORDS`` words with them (a probe that repeats what the documents say word
for word measures memorised text, not a disposition) is reported with every row of that probe.

The training tokens of both arms are read from their ``trainer_state.json`` (the same token budget
is what makes them comparable; a relative difference above ``token_tolerance`` is flagged). Every
pair gets a verdict in words, also when nothing moved. A comparison whose side scored fewer units
than the run planned (the completeness audit) says so in its note, ``INCOMPLETE: MODEL scored N of
M planned units`` (from ``compare_one``), and the pair's verdict line repeats it for own and other.

Output ``results/stats/manipulation.tsv`` (COLUMNS; one verdict line per pair comes first, with
``row_type`` verdict) and its provenance sidecar.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..io import DataError, atomic_write_text, read_json

COLUMNS = ["row_type", "arm", "control", "comparison", "probe", "probe_corpus", "metric", "model_a", "model_b",
           "diff", "ci_low", "ci_high", "p_value", "p_holm", "significant", "n", "value_a", "value_b",
           "tokens_arm", "tokens_control", "token_ratio", "status", "verdict", "note"]
FAMILY = "manipulation_check"
OVERLAP_WORDS = 8


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    import re

    w = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def probe_overlap(items_path: str, documents_path: str, n: int = OVERLAP_WORDS,
                  max_items: int | None = None) -> tuple[int, int]:
    """(items sharing a run of n words with the documents, items) for one probe (its first
    ``max_items``) and its corpus."""
    from ..evaluation.kinds.probe.items import read_file
    from ..io import read_jsonl

    grams: set = set()
    for d in read_jsonl(documents_path):
        grams |= _ngrams(str(d.get("text") or ""), n)
    items = read_file(items_path)[:max_items or None]
    hit = sum(bool(_ngrams(" ".join([it["prompt"], it["preferred"], *it["dispreferred"]]), n) & grams)
              for it in items)
    return hit, len(items)


def probe_benchmarks(cfg: dict) -> dict[str, str]:
    """{corpus: the first benchmark that measures it}: a benchmark naming a ``corpus`` whose kind
    has a ``manipulation_metric`` (the probe kind's margin)."""
    from ..evaluation.kinds import get_kind

    out: dict[str, str] = {}
    for name, b in (cfg.get("benchmarks") or {}).items():
        try:
            measures = get_kind(b.get("kind")).manipulation_metric
        except ValueError:   # an unknown kind: the schema reports it
            continue
        if measures and b.get("corpus") and b["corpus"] not in out:
            out[b["corpus"]] = name
    return out


def _single_corpus(arm: dict) -> str | None:
    c = arm.get("corpus")
    if isinstance(c, list):
        return c[0] if len(c) == 1 else None
    return c


def manipulation_pairs(cfg: dict) -> list[dict]:
    """The pairs the check compares (module docstring); [] when there are none. Raises ValueError
    naming the config key when an explicit pair cannot be checked."""
    arms = cfg.get("arms") or {}
    probes = probe_benchmarks(cfg)
    from ..workflow.sweeps import sweep_arms

    points = sweep_arms(cfg)   # sweep points: the dose-response table compares them with the control
    doc_arms = [a for a, v in arms.items() if v.get("method", "doc") == "doc" and not v.get("init_from")
                and _single_corpus(v) and a not in points]
    mc = cfg.get("manipulation_check") or {}
    explicit = mc.get("pairs")
    if explicit is None:
        wanted = [(a, b) for i, a in enumerate(doc_arms) for b in doc_arms[i + 1:]
                  if arms[a]["base_model"] == arms[b]["base_model"]
                  and _single_corpus(arms[a]) != _single_corpus(arms[b])
                  and _single_corpus(arms[a]) in probes and _single_corpus(arms[b]) in probes]
    else:
        wanted = []
        for i, p in enumerate(explicit):
            key = f"manipulation_check.pairs[{i}]"
            for side in ("arm", "control"):
                if p[side] not in doc_arms:
                    raise ValueError(f"config key '{key}.{side}': {p[side]!r} is not a document arm with one corpus "
                                     f"(document arms: {doc_arms})")
            a, b = p["arm"], p["control"]
            if arms[a]["base_model"] != arms[b]["base_model"]:
                raise ValueError(f"config key '{key}': {a!r} and {b!r} start from different base models")
            for side in (a, b):
                if _single_corpus(arms[side]) not in probes:
                    raise ValueError(f"config key '{key}': no probe benchmark measures corpus "
                                     f"{_single_corpus(arms[side])!r} of arm {side!r} (set benchmarks.NAME.corpus)")
            wanted.append((a, b))
    out = []
    for a, b in wanted:
        ca, cb = _single_corpus(arms[a]), _single_corpus(arms[b])
        out.append({"arm": a, "control": b, "base": arms[a]["base_model"], "arm_corpus": ca, "control_corpus": cb,
                    "arm_probe": probes[ca], "control_probe": probes[cb]})
    return out


def training_tokens(state_files: list[str]) -> float | None:
    """Mean training tokens over an arm's trained units (several with seeds)."""
    vals = []
    for f in state_files:
        st = read_json(f)
        tok = (st.get("result") or {}).get("tokens") if isinstance(st, dict) else None
        if tok is None:
            raise DataError(f"{f}: no result.tokens (an unfinished training run?)")
        vals.append(float(tok))
    return sum(vals) / len(vals) if vals else None


def _fmt_diff(r: dict) -> str:
    if r.get("diff") is None:
        return "not computed"
    p = r.get("p_value")
    ph = r.get("p_holm")
    ptxt = "" if p is None else f", p = {p:.3g}" + ("" if ph is None else f" (Holm {ph:.3g})")
    return f"{r['diff']:+.4f} [{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]{ptxt}"


def pair_verdict(pair: dict, own: dict, other: dict, alpha: float, tokens_ok: bool | None) -> str:
    """The pair's result in words, from its own- and other-probe rows (Holm-adjusted p)."""
    a, c = pair["arm"], pair["control"]

    def sig(r: dict) -> int:
        p = r.get("p_holm") if r.get("p_holm") is not None else r.get("p_value")
        if r.get("diff") is None or p is None or p >= alpha:
            return 0
        return 1 if r["diff"] > 0 else -1

    s_own, s_other = sig(own), sig(other)
    if own.get("diff") is None:
        text = f"{a} vs {c}: the check could not be computed ({own.get('note') or 'missing'})"
    elif s_own > 0:
        text = (f"{a} moved toward its own corpus ({pair['arm_corpus']}) relative to {c}: {_fmt_diff(own)} "
                f"on {pair['arm_probe']}")
    elif s_own < 0:
        text = (f"{a} moved AWAY from its own corpus ({pair['arm_corpus']}) relative to {c}: {_fmt_diff(own)} "
                f"on {pair['arm_probe']}")
    else:
        text = (f"{a} did NOT move toward its own corpus ({pair['arm_corpus']}) relative to {c}: "
                f"{_fmt_diff(own)} on {pair['arm_probe']}; the intervention did not take on this probe")
    if other.get("diff") is not None:
        if s_other < 0:
            text += (f"; on {pair['control_probe']} {c} leads ({_fmt_diff(other)})"
                     + (": a double dissociation" if s_own > 0 else ""))
        elif s_other > 0:
            text += f"; {a} also leads on {c}'s probe {pair['control_probe']} ({_fmt_diff(other)}): not content-specific"
        else:
            text += f"; no difference on {pair['control_probe']} ({_fmt_diff(other)})"
    if tokens_ok is False:
        text += "; WARNING: the two arms saw different numbers of training tokens"
    return text


def run_manipulation_check(pairs: list[dict], metrics_files: dict[str, dict[str, str]],
                           state_files: dict[str, list[str]], stats_cfg: dict, mc_cfg: dict, out: str,
                           demo: bool = False, overlap: dict[str, tuple] | None = None) -> list[dict]:
    """Write results/stats/manipulation.tsv; returns its rows (verdict rows first). ``overlap`` =
    {probe: (its items file, its corpus's documents file, its max_items)} for the word-overlap check."""
    overlap_note = {}
    for probe, (items_path, docs_path, *limit) in (overlap or {}).items():
        hit, n = probe_overlap(items_path, docs_path, max_items=limit[0] if limit else None)
        overlap_note[probe] = (f"{hit} of {n} {probe} items share a run of {OVERLAP_WORDS} words with their "
                               f"corpus's documents")
    from .stats import (DEMO_BANNER, _Files, compare_one, format_tsv, holm, metric_data,
                        resolve_stats_cfg)

    cfg = resolve_stats_cfg({k: v for k, v in (stats_cfg or {}).items() if k not in ("posttrain_sizes",)})
    metric = mc_cfg.get("metric") or "margin"
    tol = float(mc_cfg.get("token_tolerance", 0.1))
    files = _Files(metrics_files)
    rows: list[dict] = []
    for pair in pairs:
        a, c, base = pair["arm"], pair["control"], pair["base"]
        ta, tc = training_tokens(state_files.get(a, [])), training_tokens(state_files.get(c, []))
        ratio = (ta / tc) if ta and tc else None
        tokens = {"tokens_arm": ta, "tokens_control": tc, "token_ratio": ratio}
        for comp, probe, ma, mb in (("own", pair["arm_probe"], a, c), ("other", pair["control_probe"], a, c),
                                    ("arm_vs_base", pair["arm_probe"], a, base),
                                    ("control_vs_base", pair["control_probe"], c, base)):
            r = compare_one(probe, metric, ma, mb, FAMILY, metric_data(files.get(ma, probe), metric, ma),
                            metric_data(files.get(mb, probe), metric, mb), cfg)
            row = {"row_type": "comparison", "arm": a, "control": c, "comparison": comp, "probe": probe,
                   "probe_corpus": pair["arm_corpus"] if probe == pair["arm_probe"] else pair["control_corpus"],
                   "metric": metric, "model_a": ma, "model_b": mb, **tokens,
                   **{k: r.get(k) for k in ("diff", "ci_low", "ci_high", "p_value", "n", "value_a",
                                            "value_b", "status", "note")}}
            if probe in overlap_note:
                row["note"] = "; ".join(x for x in (row["note"], overlap_note[probe]) if x)
            row["_incomplete"] = r.get("completeness_note")   # an incomplete side: the verdict says so too
            rows.append(row)
    adj = holm([r["p_value"] for r in rows])
    for r, p in zip(rows, adj):
        r["p_holm"] = p
        r["significant"] = None if p is None else bool(p < cfg["alpha"])
    verdicts = []
    for i, pair in enumerate(pairs):
        own, other = rows[4 * i], rows[4 * i + 1]
        ratio = own["token_ratio"]
        tokens_ok = None if ratio is None else abs(ratio - 1) <= tol
        text = pair_verdict(pair, own, other, cfg["alpha"], tokens_ok)
        for r in rows[4 * i: 4 * i + 4]:
            r["verdict"] = None
        verdicts.append({**{k: own[k] for k in ("arm", "control", "tokens_arm", "tokens_control", "token_ratio")},
                         "row_type": "verdict", "comparison": "pair", "probe": own["probe"],
                         "probe_corpus": own["probe_corpus"], "metric": metric, "diff": own["diff"],
                         "ci_low": own["ci_low"], "ci_high": own["ci_high"], "p_value": own["p_value"],
                         "p_holm": own["p_holm"], "significant": own["significant"], "n": own["n"],
                         "status": own["status"], "verdict": text,
                         "note": "; ".join(x for x in (
                             *(r["_incomplete"].replace("INCOMPLETE:", f"INCOMPLETE on {r['probe']}:", 1)
                               for r in rows[4 * i: 4 * i + 2] if r.get("_incomplete")),
                             None if tokens_ok is not False else
                             f"token budgets differ by more than {tol:.0%} (ratio {ratio:.3f})",
                             *(overlap_note.get(pr) for pr in (pair["arm_probe"], pair["control_probe"])))
                             if x) or None})
    for r in rows:
        r.pop("_incomplete", None)
    rows = verdicts + rows
    banner = DEMO_BANNER if demo else None
    atomic_write_text(out, format_tsv(rows, COLUMNS, banner))
    from ..workflow.provenance import write_sidecar

    inputs = sorted({p for per in metrics_files.values() for p in per.values() if Path(p).exists()}
                    | {f for fs in state_files.values() for f in fs if Path(f).exists()})
    inputs += sorted({f for pair in (overlap or {}).values() for f in pair[:2]})
    write_sidecar(out, inputs, {"pairs": pairs, "manipulation_check": mc_cfg, "stats": stats_cfg},
                  rule="manipulation_check")
    return rows


def read_manipulation(path: str) -> list[dict]:
    """The rows of a manipulation.tsv (numbers as floats, empty cells as None)."""
    import csv

    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if not ln.startswith("#")]
    for r in csv.DictReader(lines, delimiter="\t"):
        row: dict[str, Any] = {}
        for k, v in r.items():
            if v == "":
                row[k] = None
            elif k in ("diff", "ci_low", "ci_high", "p_value", "p_holm", "value_a", "value_b", "tokens_arm",
                       "tokens_control", "token_ratio"):
                row[k] = float(v)
            elif k == "n":
                row[k] = int(float(v))
            elif k == "significant":
                row[k] = v == "true"
            else:
                row[k] = v
        out.append(row)
    return out
