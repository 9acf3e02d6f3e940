"""Provenance records, sidecars and `doctune trace` on a hand-made chain of files."""
import json
import os
import subprocess
import sys

import pytest

from doctune import cli
from doctune.workflow import provenance as P
from doctune.io import canonical_json, sha256_path


def test_redaction_keeps_settings_and_hides_secrets():
    cfg = {"api_key": "sk-123", "generators": {"g": {"max_new_tokens": 64, "hf_token": "hf_x",
                                                     "apiKey": "A", "tokenizer": "tok/path",
                                                     "client_secret": "s", "tokens_per_minute": 9,
                                                     "api_key_env": "GEMINI_API_KEY"}},
           "list": [{"password": "p"}], "require_key_phrases": 0}
    red = P.redact(cfg)
    g = red["generators"]["g"]
    assert red["api_key"] == P.REDACTED and g["hf_token"] == P.REDACTED
    assert g["apiKey"] == P.REDACTED and g["client_secret"] == P.REDACTED
    assert g["api_key_env"] == P.REDACTED and red["list"][0]["password"] == P.REDACTED
    assert g["max_new_tokens"] == 64 and g["tokens_per_minute"] == 9
    assert g["tokenizer"] == "tok/path" and red["require_key_phrases"] == 0
    assert cfg["api_key"] == "sk-123"  # not modified in place
    # the hash is over the redacted slice: recomputable from the record, blind to the secret
    assert P.config_hash(cfg) == P.config_hash({**cfg, "api_key": "other"})
    assert P.config_hash(cfg) != P.config_hash({**cfg, "require_key_phrases": 1})
    import hashlib
    assert P.config_hash(cfg) == hashlib.sha256(canonical_json(red).encode()).hexdigest()


def test_record_has_no_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "super-secret-value-123")
    f = tmp_path / "in.txt"
    f.write_text("x")
    d = tmp_path / "dir"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "a.bin").write_bytes(b"abc")
    rec = P.record({"k": 1, "token": "tok-value-456"}, [str(f), str(d), str(tmp_path / "nope")],
                   "rule_x")
    text = json.dumps(rec)
    assert "super-secret-value-123" not in text and "tok-value-456" not in text
    assert rec["inputs"][str(f)] == sha256_path(f) and rec["inputs"][str(d)] == sha256_path(d)
    assert rec["inputs"][str(tmp_path / "nope")] is None
    assert rec["rule"] == "rule_x" and len(rec["config_hash"]) == 64
    assert rec["versions"]["numpy"] and rec["versions"]["scipy"] and "python" in rec["versions"]
    assert set(rec["git"]) == {"commit", "dirty", "repo"}


def test_sidecar_path():
    assert str(P.sidecar_path("results/stats/comparisons.tsv")) == \
        "results/provenance/stats/comparisons.tsv.json"
    assert str(P.sidecar_path("/x/results/models/doc/")) == "/x/results/provenance/models/doc.json"
    assert str(P.sidecar_path("out/file.tsv")) == "out/provenance/file.tsv.json"
    with pytest.raises(ValueError):
        P.sidecar_path("results/provenance/x.json")


@pytest.fixture
def chain(tmp_path, monkeypatch):
    """resources/grid.yaml -> specs -> documents -> metrics (2 models) -> summary."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("resources")
    os.makedirs("results/specs")
    os.makedirs("results/documents")
    os.makedirs("results/metrics/doc")
    os.makedirs("results/metrics/base")
    open("resources/grid.yaml", "w").write("institutions: [a, b]\n")
    open("results/specs/c.jsonl", "w").write('{"id": 1}\n')
    P.write_sidecar("results/specs/c.jsonl", ["resources/grid.yaml"], {"n": 2}, "specs")
    open("results/documents/c.jsonl", "w").write('{"id": 1, "text": "t"}\n')
    P.write_sidecar("results/documents/c.jsonl", ["results/specs/c.jsonl"], {"gen": "g"}, "documents")
    for m in ("doc", "base"):
        open(f"results/metrics/{m}/ahb.json", "w").write('{"status": "ok"}')
        ins = ["results/documents/c.jsonl"] if m == "doc" else []
        P.write_sidecar(f"results/metrics/{m}/ahb.json", ins, {}, "metrics")
    open("results/summary.tsv", "w").write("model\n")
    P.write_sidecar("results/summary.tsv", ["results/metrics/doc/ahb.json",
                                            "results/metrics/base/ahb.json"], {}, "summary")
    return tmp_path


def statuses(tree):
    return {n["path"]: n["status"] for _, n in P.iter_links(tree)}


def test_trace_current_chain(chain, capsys):
    tree = P.trace("results/summary.tsv")
    st = statuses(tree)
    assert st == {"results/summary.tsv": "current", "results/metrics/doc/ahb.json": "current",
                  "results/metrics/base/ahb.json": "current",
                  "results/documents/c.jsonl": "current", "results/specs/c.jsonl": "current",
                  "resources/grid.yaml": "current"}
    rules = [n["rule"] for _, n in P.iter_links(tree)]
    assert rules == ["summary", "metrics", "documents", "specs", None, "metrics"]
    assert cli.main(["trace", "results/summary.tsv", "--strict"]) == 0
    out = capsys.readouterr().out
    assert "all links current" in out and "rule documents" in out
    assert "no record (source)" in out and sha256_path("resources/grid.yaml")[:12] in out


def test_trace_stale_and_missing(chain, capsys):
    # an input changed after its dependants were made -> every link recording it is stale
    open("results/specs/c.jsonl", "w").write('{"id": 2}\n')
    open("resources/grid.yaml", "a").write("# edited\n")
    os.remove("results/metrics/base/ahb.json")
    tree = P.trace("results/summary.tsv")
    st = statuses(tree)
    assert st["results/specs/c.jsonl"].startswith("stale")
    assert st["resources/grid.yaml"].startswith("stale")
    assert st["results/metrics/base/ahb.json"] == "missing"
    assert st["results/documents/c.jsonl"] == "current"
    assert cli.main(["trace", "results/summary.tsv", "--strict"]) == 1
    out = capsys.readouterr().out
    assert "3 link(s) not current" in out and "now " in out
    assert cli.main(["trace", "results/summary.tsv", "--json"]) == 0
    tree_json = json.loads(capsys.readouterr().out)
    assert tree_json["inputs"][1]["status"] == "missing"


def test_trace_from_another_directory_and_no_record(chain, tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    tree = P.trace(str(chain / "results" / "summary.tsv"))
    assert set(statuses(tree).values()) == {"current"}
    (chain / "results" / "loose.txt").write_text("x")
    assert P.trace(str(chain / "results" / "loose.txt"))["status"] == "no record"
    assert cli.main(["trace", str(chain / "nothing.txt")]) == 2


def test_console_script_help():
    res = subprocess.run([sys.executable, "-m", "doctune.cli", "--help"], capture_output=True,
                         text=True, check=True)
    assert "trace" in res.stdout
    res = subprocess.run([sys.executable, "-m", "doctune.cli", "trace", "--help"],
                         capture_output=True, text=True, check=True)
    assert "stale" in res.stdout


@pytest.fixture
def diamond(chain):
    """The chain, with the base model's metrics also made from the documents (a shared ancestor)."""
    P.write_sidecar("results/metrics/base/ahb.json", ["results/documents/c.jsonl"], {}, "metrics")
    return chain


def test_trace_shows_each_ancestor_once(diamond, capsys):
    tree = P.trace("results/summary.tsv")
    links = [n for _, n in P.iter_links(tree)]
    # both metrics files link to the documents; the second link refers to the first instead of
    # repeating documents -> specs -> grid
    docs = [n for n in links if n["path"] == "results/documents/c.jsonl"]
    assert len(docs) == 2 and docs[0]["inputs"] and not docs[1]["inputs"]
    assert docs[1]["ref"] == docs[0]["id"] and docs[1]["status"] == "current"
    assert [n["path"] for n in links].count("results/specs/c.jsonl") == 1
    assert cli.main(["trace", "results/summary.tsv"]) == 0
    out = capsys.readouterr().out
    assert out.count("results/specs/c.jsonl") == 1
    assert f"(inputs shown above at #{docs[0]['id']})" in out and f"#{docs[0]['id']}\n" in out
    # a later link keeps its own status: the documents changed after the base metrics recorded them
    open("results/documents/c.jsonl", "w").write('{"id": 1, "text": "new"}\n')
    P.write_sidecar("results/documents/c.jsonl", ["results/specs/c.jsonl"], {"gen": "g"}, "documents")
    P.write_sidecar("results/metrics/doc/ahb.json", ["results/documents/c.jsonl"], {}, "metrics")
    docs = [n for _, n in P.iter_links(P.trace("results/summary.tsv")) if n["path"] == "results/documents/c.jsonl"]
    assert [d["status"] for d in docs] == ["current", "stale"] and "ref" in docs[1]


def test_trace_depth(diamond, capsys):
    tree = P.trace("results/summary.tsv", max_depth=1)
    assert [n["path"] for _, n in P.iter_links(tree)] == [
        "results/summary.tsv", "results/metrics/doc/ahb.json", "results/metrics/base/ahb.json"]
    assert tree["inputs"][0]["not_shown"] == 1
    assert cli.main(["trace", "results/summary.tsv", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "results/documents/c.jsonl" in out and "results/specs/c.jsonl" not in out
    assert "below the --depth limit not shown" in out
    assert cli.main(["trace", "results/summary.tsv", "--depth", "-1"]) == 2


def test_trace_into_a_closed_pipe(diamond):
    """`doctune trace ... | head -n 1`: no BrokenPipeError, no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "doctune.cli", "trace", "results/summary.tsv"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=diamond)
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader goes away, as `head` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert first.startswith(b"results/summary.tsv") and err == ""


def test_trace_names_the_run_folder(chain, monkeypatch, capsys):
    run = chain / "runs" / "tiny"
    run.mkdir(parents=True)
    os.rename(chain / "results", run / "results")
    os.rename(chain / "resources", run / "resources")  # recorded paths are relative to the run folder
    assert cli.main(["trace", "results/summary.tsv"]) == 2
    assert "runs/tiny/results/summary.tsv" in capsys.readouterr().err
    assert cli.main(["trace", "runs/tiny/results/summary.tsv", "--strict"]) == 0


def test_times_sums_benchmark_files_per_rule(tmp_path, capsys):
    """`doctune times RUN` prints the time per stage from the run's benchmark files."""
    b = tmp_path / "results" / "benchmarks"
    (b / "train_arm").mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\n"
    (b / "train_arm" / "doc.tsv").write_text(header + "9.0\t0:00:09\t1\n12.5\t0:00:12\t1\n")  # rerun: last row
    (b / "train_arm" / "control.tsv").write_text(header + "7.5\t0:00:07\t1\n")
    (b / "summary.tsv").write_text(header + "1.0\t0:00:01\t1\n")
    assert cli.main(["times", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["train_arm", "2", "20.0", "10.00"] and out[2].split()[:3] == ["summary", "1", "1.0"]
    assert out[-1].split()[-1] == "21.0"
    assert cli.main(["times", str(tmp_path / "absent")]) == 2
    assert "no benchmark folder" in capsys.readouterr().err


def test_limit_threads_sets_the_declared_count():
    from doctune.workflow.pipeline import THREAD_ENV, limit_threads

    env: dict = {}
    assert limit_threads(3, env) == 3
    assert {k: env[k] for k in THREAD_ENV} == {k: "3" for k in THREAD_ENV}
    for bad in (None, 0, -2, "x"):
        env2: dict = {}
        assert limit_threads(bad, env2) is None and env2 == {}
