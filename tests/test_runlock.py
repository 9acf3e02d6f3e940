"""doctune.workflow.runlock: locks of a killed Snakemake run are removed, a living run's never."""
import json
import os
import socket
import subprocess
import sys

from doctune.workflow.runlock import clear_stale_locks


def _locks(tmp_path):
    d = tmp_path / ".snakemake" / "locks"
    d.mkdir(parents=True, exist_ok=True)
    (d / "0.input.lock").write_text("a\n")
    (d / "0.output.lock").write_text("b\n")
    return d


def _register(tmp_path, pid, host=None, start=None):
    runs = tmp_path / ".snakemake" / "doctune-runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"x-{pid}.json").write_text(json.dumps({"host": host or socket.gethostname(), "pid": pid,
                                                    "start": start}))


def test_locks_of_a_dead_run_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    _register(tmp_path, int(dead))
    d = _locks(tmp_path)
    removed = clear_stale_locks(tmp_path)
    assert len(removed) == 2 and not list(d.glob("*.lock"))
    recs = [json.loads(f.read_text()) for f in (tmp_path / ".snakemake/doctune-runs").glob("*.json")]
    assert [r["pid"] for r in recs] == [os.getpid()]          # the dead run's record pruned, ours added


def test_locks_of_a_living_run_or_another_host_are_kept(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        from doctune.workflow.runlock import _start_time

        _register(tmp_path, p.pid, start=_start_time(p.pid))
        d = _locks(tmp_path)
        assert clear_stale_locks(tmp_path) == [] and len(list(d.glob("*.lock"))) == 2
    finally:
        p.kill()
        p.wait()
    # the pid is gone now (or reused by a process with another start time): stale
    assert len(clear_stale_locks(tmp_path)) == 2
    _register(tmp_path, 1, host="another-host")
    d = _locks(tmp_path)
    assert clear_stale_locks(tmp_path) == [] and len(list(d.glob("*.lock"))) == 2


def test_make_demo_builds_the_default_target(repo_root):
    """`make demo` runs rule all (summary, comparisons, plots), not just the summary."""
    out = subprocess.run(["make", "-n", "demo", "VENV=/nonexistent-venv"], cwd=repo_root, capture_output=True,
                         text=True).stdout
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("snakemake "))
    assert line.split() == ["snakemake", "--configfile", "config/demo.yaml", "-c2"]
    snakefile = (repo_root / "Snakefile").read_text()
    rule_all = snakefile.split("rule all:", 1)[1].split("default_target: True", 1)[0]
    assert "L.summary()" in rule_all and 'L.stats("comparisons")' in rule_all
    assert "PLOTS" in rule_all
