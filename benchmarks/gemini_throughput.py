"""Throughput of the document stage on the real google-genai SDK against a loopback server.

A stdlib asyncio server (harness.gemini_loopback, in its own process) answers each request
after --latency seconds and returns HTTP 429 beyond --server-rpm requests per minute. The full
document path runs against it: specs from the template grid, GeminiBackend (async, bounded
concurrency, rpm limiter, retries) inside CachedBackend (fsync per reply), validation, output.

Prints documents per minute against the bound min(concurrency / latency * 60, rpm).

    python benchmarks/gemini_throughput.py               # 2,500 documents at 4,000 rpm
    python benchmarks/gemini_throughput.py --n 500       # shorter run
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO)]   # the package and harness/ (the loopback server)


def serve(latency: float, rpm: float, conn) -> None:
    from harness.gemini_loopback import LoopbackGemini

    srv = LoopbackGemini(latency_s=latency, rpm=rpm).start()
    conn.send(srv.url)
    conn.recv()  # wait for "stop"
    conn.send({"total": srv.total, "status": {str(k): v for k, v in srv.status_counts.items()}, "max_in_flight": srv.max_in_flight,
               "distinct_prompts": len(srv.counts)})
    srv.stop()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2500, help="documents (default 2500)")
    ap.add_argument("--latency", type=float, default=2.0, help="server seconds per request (default 2)")
    ap.add_argument("--rpm", type=float, default=4000, help="client requests-per-minute limit (default 4000)")
    ap.add_argument("--server-rpm", type=float, default=None, help="server limit, 429 beyond (default = --rpm)")
    ap.add_argument("--concurrency", type=int, default=200, help="requests in flight (default 200)")
    a = ap.parse_args(argv)
    server_rpm = a.server_rpm if a.server_rpm is not None else a.rpm

    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=serve, args=(a.latency, server_rpm, child), daemon=True)
    proc.start()
    url = parent.recv()
    os.environ.setdefault("GEMINI_API_KEY", "loopback-benchmark-key")
    from doctune.documents import generate_documents, make_specs
    from doctune.io import write_jsonl

    with tempfile.TemporaryDirectory() as tmp:
        specs = Path(tmp) / "specs.jsonl"
        write_jsonl(specs, make_specs("animal_welfare", a.n, 0, REPO / "resources"))
        gen = {"backend": "gemini", "model": "gemini-2.5-flash-lite", "base_url": url,
               "concurrency": a.concurrency, "rpm": a.rpm, "max_retries": 8, "backoff_initial_s": 0.5,
               "backoff_max_s": 8, "timeout_s": 60, "max_output_tokens": 4096,
               "price_in_per_mtok": 0.10, "price_out_per_mtok": 0.40}
        t0 = time.monotonic()
        rep = generate_documents(str(specs), str(Path(tmp) / "docs.jsonl"), str(Path(tmp) / "rep.json"), gen,
                                 {"min_words": 5, "near_duplicate_threshold": 0.95, "max_attempts": 2},
                                 None, str(Path(tmp) / "cache.jsonl"))
        wall = time.monotonic() - t0
    parent.send("stop")
    server = parent.recv()
    proc.join(10)

    bound = min(a.concurrency / a.latency * 60.0, a.rpm)
    dpm = rep["generated"] / wall * 60.0
    out = {"documents_requested": a.n, "documents_generated": rep["generated"], "wall_s": round(wall, 1),
           "documents_per_min": round(dpm, 1), "bound_per_min": round(bound, 1),
           "fraction_of_bound": round(dpm / bound, 3), "concurrency": a.concurrency, "latency_s": a.latency,
           "rpm": a.rpm, "server_rpm": server_rpm, "server": server, "api_retries": rep["api_retries"]}
    print(json.dumps(out, indent=2))
    print(f"{rep['generated']} documents in {wall:.1f} s: {dpm:.0f} documents/min = "
          f"{100 * dpm / bound:.1f}% of the bound {bound:.0f}/min "
          f"(min(concurrency/latency, rpm)); HTTP 429s: {server['status'].get('429', 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
