#!/usr/bin/env python
"""Turn the files `benchmarks/gpu_checks.sh` leaves (gpu.txt, smoke.log, train.json,
generation.json) into one markdown record under docs/benchmarks/, named after the date and card.

    python benchmarks/record_gpu_results.py RESULTS_DIR [--date YYYY-MM-DD] [--out docs/benchmarks]

Every number comes from those files; a variant that failed, timed out or was skipped is listed
with its status and no figure. The goals are the issues' (training 12,500 tokens/s, generation
5,000 new tokens/s on one H100); the record says whether the best variant met each.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from pathlib import Path

TRAIN_GOAL = 12_500
GEN_GOAL = 5_000


def _fmt(x, spec):
    return "" if x is None else format(x, spec)


def card_name(results: Path) -> str:
    f = results / "gpu.txt"
    if not f.exists():
        return "unknown GPU"
    lines = [ln for ln in f.read_text().splitlines() if ln.strip() and not ln.startswith("name")]
    return lines[0].split(",")[0].strip() if lines else "unknown GPU"


def _best(rows: list[dict], key: str, goal: int, unit: str, extra, goal_setting) -> list[str]:
    """The line naming the fastest variant and whether it meets the goal (nothing if none ran). The
    goal is judged only for the goal's own setting (the 8B shape on a GPU, the full workload)."""
    ok = [r for r in rows if r.get(key)]
    if not ok:
        return []
    best = max(ok, key=lambda r: r[key])
    if goal_setting(best):
        verdict = f"which {'meets' if best[key] >= goal else 'does not meet'} the goal of {goal:,}"
    else:
        verdict = f"not comparable with the goal of {goal:,} (not the 8B shape and full workload on a GPU)"
    return ["", f"Best: **{best['variant']}, {best[key]:,.0f} {unit}**{extra(best)}, {verdict}."]


def train_section(results: Path) -> list[str]:
    f = results / "train.json"
    if not f.exists():
        return ["Training: no train.json (the benchmark did not run or finish a variant)."]
    rows = json.loads(f.read_text())
    devices = sorted({r["device"] for r in rows if r.get("device")})
    out = [f"Device reported by the benchmark: {', '.join(devices) or 'none (no variant finished)'}.", "",
           "| variant | status | tokens/s | MFU (measured peak) | MFU (data sheet) | peak GiB |",
           "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        out.append(f"| {r['variant']} | {r['status']} | {_fmt(r.get('tokens_per_s'), ',.0f')} "
                   f"| {_fmt(r.get('mfu_vs_measured_peak'), '.1%')} | {_fmt(r.get('mfu_vs_datasheet'), '.1%')} "
                   f"| {_fmt(r.get('peak_mem_gib'), '.1f')} |")
    return out + _best(rows, "tokens_per_s", TRAIN_GOAL, "tokens/s",
                       lambda b: f" (matmul peak measured at {b['measured_matmul_tflops']:.3g} TFLOP/s; "
                                 f"versions {b.get('versions')})",
                       lambda b: b.get("device") != "cpu" and b.get("seq_len") == 4096
                       and str(b.get("model", "")).startswith("llama-3.1-8b-shape (32 layers)"))


def generation_section(results: Path) -> list[str]:
    f = results / "generation.json"
    if not f.exists():
        return ["Generation: no generation.json (the benchmark did not run or finish a variant)."]
    data = json.loads(f.read_text())
    rows = data["rows"]
    out = [f"Device reported by the benchmark: {data.get('device')}.", "",
           "| variant | batches | new tokens/s | seconds | warm-up s | peak GiB | status |",
           "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        b = r.get("batches")
        shown = "" if not b else (f"{len(b)} x {b[0]}" if len(set(b)) == 1 else "+".join(map(str, b)))
        out.append(f"| {r['variant']} | {shown} | {_fmt(r.get('new_tok_per_s'), ',.0f')} | {_fmt(r.get('seconds'), '')} "
                   f"| {_fmt(r.get('warmup_seconds'), '')} | {_fmt(r.get('peak_gib'), '')} | {r.get('error', 'ok')} |")
    return out + _best(rows, "new_tok_per_s", GEN_GOAL, "new tokens/s",
                       lambda b: f" ({b['completions']} completions, {b['new_tokens']:,} new tokens)",
                       lambda b: data.get("device") != "cpu" and b["completions"] == 780
                       and b["new_tokens"] == 780 * 512)


def smoke_section(results: Path) -> list[str]:
    f = results / "smoke.log"
    if not f.exists():
        return ["Functional checks: no smoke.log."]
    lines = [ln for ln in f.read_text().splitlines() if re.match(r"^(PASS|FAIL) ", ln)]
    return [f"- {ln}" for ln in lines] or ["Functional checks: smoke.log has no PASS/FAIL lines (killed early?)."]


def table_section(results: Path, name: str, what: str) -> list[str]:
    """The device line and markdown table a small benchmark printed to NAME."""
    f = results / name
    lines = [ln for ln in f.read_text().splitlines() if ln.startswith("|") or ln.startswith("device")] if f.exists() else []
    return lines or [f"{what}: no {name}."]


def record(results: Path, date: str, out_dir: Path) -> Path:
    card = card_name(results)
    slug = re.sub(r"[^a-z0-9]+", "-", card.lower()).strip("-") or "gpu"
    text = [f"# GPU measurements, {date}, {card}", "",
            "Made by `python benchmarks/record_gpu_results.py` from the output of `bash benchmarks/gpu_checks.sh`.",
            "", "## Functional checks (`benchmarks/gpu_smoke.py`)", "", *smoke_section(results), "",
            "## Training throughput (`benchmarks/train_throughput.py`, LoRA r=16, seq 4096, 8B shape)", "",
            *train_section(results), "",
            "## Chunked cross-entropy, forward + backward (`benchmarks/loss_throughput.py`)", "",
            *table_section(results, "loss.log", "Loss"), "",
            "## Seeded sampler per decoding step (`benchmarks/sampler_throughput.py`)", "",
            *table_section(results, "sampler.log", "Sampler"), "",
            "## Generation throughput (`benchmarks/generation_throughput.py`, 780 x 512 new tokens, 8B shape)", "",
            *generation_section(results), ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"gpu-{date}-{slug}.md"
    path.write_text("\n".join(text))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--date", default=dt.date.today().isoformat())
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "benchmarks")
    args = ap.parse_args(argv)
    if not args.results.is_dir():
        sys.exit(f"{args.results}: not a directory")
    print(record(args.results, args.date, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
