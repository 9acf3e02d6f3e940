"""The documents stage under faults and kills: what they cost in requests and in time.

The real google-genai SDK runs the full document path (GeminiBackend in CachedBackend, the
validation, the report) in a child process against the loopback stand-in
(harness.gemini_loopback), twice on the same specs:

* clean: no faults, one uninterrupted run;
* faults only: the same faults, no kills;
* faulty: the server answers at random --malformed (a 200 whose JSON is cut off), --r429 (HTTP
  429) and --r5xx (HTTP 500) of all requests, and the child is killed with SIGKILL at --kills
  random moments; after each kill the same command runs again, until the corpus is complete.

Prints, for the faulty run, requests sent per document kept against its bound (1 + the retries
the faults forced per document; anything above it is requests in flight at a kill, at most
`concurrency` per kill) and its wall time against the clean run's (process starts included).
The client uses the backend's default backoff (1 s doubling, jitter) and honours nothing else.

    python benchmarks/gemini_faults.py                  # 300 documents, 0.5 s latency, 3 kills
    python benchmarks/gemini_faults.py --n 500 --latency 2
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(1, str(REPO))   # harness/

CHILD = r"""
import json, sys
from doctune.documents import generate_documents
generate_documents(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]),
                   {"min_words": 5, "require_key_phrases": 0, "near_duplicate_threshold": 0.95,
                    "max_attempts": 3}, None, sys.argv[5])
"""


def stored(cache: Path) -> int:
    from doctune.io import read_jsonl

    return len(read_jsonl(cache, tolerate_torn_tail=True)) if cache.exists() else 0


def run_corpus(tmp: Path, url: str, n: int, concurrency: int, kills: int, rng: random.Random) -> dict:
    from doctune.documents import make_specs
    from doctune.io import write_jsonl

    tmp.mkdir(parents=True, exist_ok=True)
    specs, out, rep, cache = tmp / "specs.jsonl", tmp / "docs.jsonl", tmp / "report.json", tmp / "cache.jsonl"
    write_jsonl(specs, make_specs("animal_welfare", n, 0, REPO / "resources"))
    gen = {"backend": "gemini", "model": "gemini-2.5-flash-lite", "base_url": url, "concurrency": concurrency,
           "max_retries": 8, "price_in_per_mtok": 0.1, "price_out_per_mtok": 0.4}
    args = [sys.executable, "-c", CHILD, str(specs), str(out), str(rep), json.dumps(gen), str(cache)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "GEMINI_API_KEY": "loopback-benchmark-key"}
    t0 = time.perf_counter()
    starts = 0
    for k in range(kills):
        # kill once the cache has grown by a random share of what is left, spread over the run
        left = n - stored(cache)
        mark = stored(cache) + rng.randint(max(1, left // (2 * (kills - k + 1))), max(1, left // (kills - k + 1)))
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        starts += 1
        while stored(cache) < mark and p.poll() is None:
            time.sleep(0.002)
        time.sleep(rng.random() * 0.2)                # a random moment, not right after a write
        p.send_signal(signal.SIGKILL)
        p.wait()
    while True:
        starts += 1
        p = subprocess.run(args, env=env, capture_output=True)
        if p.returncode == 0:
            break
        raise SystemExit(f"run failed:\n{p.stderr.decode()[-3000:]}")
    wall = time.perf_counter() - t0
    r = json.loads(rep.read_text())
    return {"wall_s": wall, "starts": starts, "report": r}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="documents (default 300)")
    ap.add_argument("--latency", type=float, default=0.5, help="server seconds per request (default 0.5)")
    ap.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    ap.add_argument("--malformed", type=float, default=0.03)
    ap.add_argument("--r429", type=float, default=0.15)
    ap.add_argument("--r5xx", type=float, default=0.05)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    from harness.gemini_loopback import LoopbackGemini

    rng = random.Random(a.seed)
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        faults = {"malformed": a.malformed, "429": a.r429, "5xx": a.r5xx}
        for name, fl, kills in (("clean", None, 0), ("faults_only", faults, 0), ("faulty", faults, a.kills)):
            with LoopbackGemini(latency_s=a.latency, faults=fl, fault_seed=a.seed) as srv:
                out = run_corpus(Path(tmp) / name, srv.url, a.n, a.concurrency, kills, rng)
                out.update(served=srv.total, faults=dict(srv.fault_counts),
                           repeats=sum(c - 1 for c in srv.request_counts.values()),
                           distinct=len(srv.request_counts))
            res[name] = out
    c, f = res["clean"], res["faulty"]
    kept = f["report"]["generated"]
    forced = sum(f["faults"].values())
    api = f["report"]["api"]
    per_doc = f["served"] / kept
    bound = 1 + forced / kept
    print(f"documents: {a.n} planned, kept clean {c['report']['generated']}, faulty {kept}; "
          f"latency {a.latency} s, concurrency {a.concurrency}")
    print(f"faults served: {f['faults']} = {forced / f['served']:.1%} of {f['served']} requests; "
          f"kills: {a.kills} (SIGKILL), process starts: {f['starts']}")
    print(f"requests reaching the server per document kept: clean {c['served'] / c['report']['generated']:.3f}, "
          f"faulty {per_doc:.3f}; bound 1 + forced retries per document = {bound:.3f}; "
          f"excess {f['served'] - kept - forced} request(s) (in flight at a kill; at most "
          f"{a.kills * a.concurrency})")
    print(f"ledger (report.api; 'in flight' = sent by the client with no reply recorded, an upper bound on "
          f"what reached the API): sent {api['requests_sent']}, in flight at a kill {api['in_flight_at_kill']}, "
          f"retries {api['retries']}, replies by kind {api['replies_by_kind']}, runs {api['runs']}, "
          f"requests per kept {api['requests_per_kept']}")
    print(f"distinct requests answered twice: {f['repeats'] - forced} "
          f"(repeats {f['repeats']} minus forced retries {forced})")
    fo = res["faults_only"]
    print(f"wall time: clean {c['wall_s']:.1f} s; faults, no kills {fo['wall_s']:.1f} s "
          f"({fo['wall_s'] / c['wall_s']:.2f}x, requests per document kept "
          f"{fo['served'] / fo['report']['generated']:.3f}); faults and kills {f['wall_s']:.1f} s "
          f"(ratio {f['wall_s'] / c['wall_s']:.2f}x)")
    print(f"cost reported: clean ${c['report']['estimated_cost_usd']}, faulty ${f['report']['estimated_cost_usd']} "
          f"(ratio {f['report']['estimated_cost_usd'] / c['report']['estimated_cost_usd']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
