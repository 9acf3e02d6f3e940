"""The README's command after kills: Snakemake itself killed (SIGKILL, SIGTERM, the whole process
group, as a closed terminal or a cluster does) at random moments while the documents stage talks
to a misbehaving Gemini stand-in; running the same command again finishes with no manual step,
no paid reply is lost or asked for twice, and the reports add up every run."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from doctune.io import read_jsonl
from harness.gemini_loopback import LoopbackGemini

from test_e2e_demo import copy_repo

pytestmark = pytest.mark.slow
CANARY = "canary-KEY-e2e-51c0"
CORPORA = ("animal_welfare_ai", "urban_density")


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", GEMINI_API_KEY=CANARY)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def test_killed_snakemake_reruns_with_the_same_command(tmp_path):
    work = copy_repo(tmp_path / "repo")
    cfg = yaml.safe_load((work / "config/tiny.yaml").read_text())
    n, conc = 40, 3
    faults = {"malformed": 0.03, "429": 0.15, "5xx": 0.05}
    with LoopbackGemini(latency_s=0.03, faults=faults, fault_seed=11) as srv:
        cfg["generators"]["local"] = {"backend": "gemini", "model": "gemini-test", "base_url": srv.url,
                                      "concurrency": conc, "backoff_initial_s": 0.02, "backoff_max_s": 0.1,
                                      "max_new_tokens": 256}
        for c in CORPORA:
            cfg["corpora"][c]["n"] = n
        cfg["run_name"] = "kill"
        run = work / "runs" / "kill"            # the run folder: Snakemake's working directory
        (work / "config/kill.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        targets = [f"results/documents/{c}.jsonl" for c in CORPORA]
        cmd = [sys.executable, "-m", "snakemake", *targets, "--configfile", "config/kill.yaml", "-c2"]
        caches = [run / f"results/cache/documents/{c}.jsonl" for c in CORPORA]

        def stored():
            return sum(len(read_jsonl(f, tolerate_torn_tail=True)) for f in caches if f.exists())

        rng = random.Random(5)
        logs = []
        kills = 0
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGKILL):
            before = stored()
            p = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True)
            target = before + rng.randint(4, 16)
            deadline = time.time() + 120
            while time.time() < deadline and stored() < target and p.poll() is None:
                time.sleep(0.01)
            assert p.poll() is None, p.communicate()[0].decode()[-3000:]
            time.sleep(rng.random() * 0.1)
            os.killpg(p.pid, sig)
            logs.append(p.communicate(timeout=60)[0])
            kills += 1
            for f in targets:
                assert not (run / f).exists()
        assert stored() < 2 * n
        final = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, timeout=600)
        out = final.stdout + final.stderr
        assert final.returncode == 0, out.decode()[-4000:]
        logs.append(out)
        repeats = sum(c - 1 for c in srv.request_counts.values())
        served_faults = sum(srv.fault_counts.values())
        served = srv.total
    # at most `concurrency` requests per running job were in flight at each kill (2 jobs at -c2)
    assert repeats <= served_faults + kills * 2 * conc
    sent = lost = ok = 0
    for c in CORPORA:
        docs = read_jsonl(run / f"results/documents/{c}.jsonl")
        rep = json.loads((run / f"results/documents/{c}.report.json").read_text())
        api = rep["api"]
        assert rep["generated"] == len(docs) and len(docs) + rep["dropped"] == n
        assert api["runs"] >= 2 and api["in_flight_at_kill"] <= kills * conc
        sent, lost, ok = sent + api["requests_sent"], lost + api["in_flight_at_kill"], ok + api["replies_by_kind"]["ok"]
        assert rep["retries"] >= api["retries"] > 0
    assert sent - lost <= served <= sent
    # every distinct request answered once; a reply stored just as a kill landed is counted in
    # flight by the ledger (it counts replies after the cache holds them), never as a second ok
    assert ok <= len(srv.request_counts) <= ok + lost
    blob = b"".join(logs).decode(errors="replace")
    blob += "".join(f.read_text(errors="replace") for f in (run / "results").rglob("*") if f.is_file())
    assert CANARY not in blob
