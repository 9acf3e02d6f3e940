"""The SLURM profile and the local single-node cluster (src/doctune/slurm.py, slurm/config.yaml).

Unit tests (configuration rendering, profile contents) run everywhere. The tests marked `slurm`
start a real cluster (munged, MariaDB + slurmdbd, slurmctld, slurmd; packages installed with apt
when missing), run the demo DAG through `--profile slurm` and check what `sacct` recorded; they
skip when not root or when the packages cannot be installed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from test_e2e_demo import RUN, copy_repo

from harness import slurm as ds

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


# ----------------------------------------------------------------------------- unit tests

def _cfg(tmp_path, **kw):
    env = {"DOCTUNE_SLURM_DIR": str(tmp_path / "state"), **kw}
    return ds.ClusterConfig.from_env(env)


def test_parse_slurmd_C():
    hw = ds.parse_slurmd_C("NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 "
                           "ThreadsPerCore=1 RealMemory=24105")
    assert (hw.cpus, hw.cores_per_socket, hw.real_memory_mb) == (2, 2, 24105)
    with pytest.raises(ds.ClusterError, match="cannot parse"):
        ds.parse_slurmd_C("UpTime=0-00:09:43")


def test_config_from_env_and_errors(tmp_path):
    cfg = _cfg(tmp_path, DOCTUNE_SLURM_PARTITION="gpu", DOCTUNE_SLURM_GPUS="2")
    assert cfg.partition == "gpu" and cfg.gpus == 2 and cfg.state_dir == (tmp_path / "state").resolve()
    with pytest.raises(ds.ClusterError, match="DOCTUNE_SLURM_GPUS"):
        _cfg(tmp_path, DOCTUNE_SLURM_GPUS="two")
    with pytest.raises(ds.ClusterError, match="partition"):
        _cfg(tmp_path, DOCTUNE_SLURM_PARTITION="a b")


def test_rendered_configs(tmp_path):
    cfg = _cfg(tmp_path, DOCTUNE_SLURM_GPUS="2")
    paths = ds.Paths(cfg.state_dir)
    hw = ds.NodeHardware(cpus=2, cores_per_socket=2, real_memory_mb=10000)
    conf = ds.render_slurm_conf(cfg, paths, hw)
    assert "AccountingStoreFlags=job_comment" in conf
    assert "GresTypes=gpu" in conf and "AccountingStorageType=accounting_storage/slurmdbd" in conf
    node = next(line for line in conf.splitlines() if line.startswith("NodeName=localhost"))
    assert "CPUs=2" in node and "RealMemory=9000" in node and "Gres=gpu:fake:2" in node
    assert f"PartitionName={cfg.partition} " in conf
    assert str(paths.root) in conf  # state, pids and logs under the state dir
    gres = ds.render_gres_conf(cfg, paths)
    assert "AutoDetect=off" in gres and gres.count("Name=gpu") == 2
    dbd = ds.render_slurmdbd_conf(cfg, paths, "pw")
    assert "StoragePass=pw" in dbd and f"StoragePort={cfg.mysql_port}" in dbd
    ds.write_configs(cfg, paths, hw)
    assert oct(paths.slurmdbd_conf.stat().st_mode & 0o777) == "0o600"
    assert paths.slurm_conf.read_text() == conf


def test_status_and_stop_without_cluster(tmp_path):
    cfg = _cfg(tmp_path)
    assert ds.stop(cfg) == []            # stopping a stopped cluster is fine
    st = ds.status(cfg)
    assert all(st[d] is None for d in ds.DAEMONS)
    # a stale pid file naming some other live process is not "our daemon"
    paths = ds.Paths(cfg.state_dir)
    paths.run.mkdir(parents=True)
    paths.pidfile("slurmctld").write_text(f"{os.getpid()}\n")
    assert ds.running_pid(paths, "slurmctld") is None
    assert ds.stop(cfg) == [] and not paths.pidfile("slurmctld").exists()


def test_profile_contents():
    prof = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert prof["retries"] >= 1 and prof["latency-wait"] >= 10
    assert "slurm_partition" in prof["default-resources"] and "slurm_account" in prof["default-resources"]
    for rule in ["judge", "metrics", "score_logprob", "lm_eval", "comparisons", "summary", "plots",
                 "specs", "posttrain_data"]:
        assert prof["groups"][rule] in prof["group-components"], rule
    # group submissions are capped, so packed jobs never ask for more than one node offers
    assert prof["set-resource-scopes"]["gpu"] == "local" and prof["resources"]["gpu"] >= 1


def test_profile_dry_run_real_workflow(tmp_path):
    """The profile parses against the real Snakefile (rule names, groups, resources)."""
    if shutil.which("sinfo") is None:
        pytest.skip("SLURM client commands are not installed (the executor plugin needs sinfo)")
    work = copy_repo(tmp_path / "repo")
    out = smk(work, "results/summary.tsv", "--configfile", "config/tiny.yaml", "--profile", "slurm", "-n",
              timeout=300)
    assert "Group job scoring" in out.stdout or "group job scoring" in out.stdout.lower()


# ----------------------------------------------------------------------------- helpers

def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def smk(workdir: Path, *args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(SNAKEMAKE + list(args), cwd=workdir, env=_env(env), capture_output=True,
                          text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def sacct(cluster_env: dict, since: str, after_id: int = 0) -> list[dict]:
    out = subprocess.run(
        ["sacct", "-a", "-X", "-P", "-n", "-S", since, "--format=JobIDRaw,State,AllocTRES,ReqMem,Comment,"
         "Partition,Account,ExitCode"],
        env=cluster_env, capture_output=True, text=True, check=True, timeout=60).stdout
    keys = ["id", "state", "tres", "reqmem", "comment", "partition", "account", "exit"]
    rows = [dict(zip(keys, line.split("|"))) for line in out.splitlines() if line.strip()]
    return [r for r in rows if int(r["id"].split("_")[0]) > after_id]


def last_jobid(cluster_env: dict) -> int:
    rows = sacct(cluster_env, "2000-01-01T00:00:00")
    return max((int(r["id"].split("_")[0]) for r in rows), default=0)


# ----------------------------------------------------------------------------- the cluster

@pytest.fixture(scope="module")
def cluster():
    """A single-node cluster with its own state dir and ports, stopped and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the local SLURM cluster needs root")
    try:
        ds.ensure_installed()
    except (ds.ClusterError, subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"SLURM packages cannot be installed: {exc}")
    state = Path(tempfile.mkdtemp(prefix="doctune-slurm-test-", dir="/tmp"))  # short: socket paths
    cfg = ds.ClusterConfig.from_env({
        "DOCTUNE_SLURM_DIR": str(state), "DOCTUNE_SLURM_CTLD_PORT": "16817",
        "DOCTUNE_SLURM_SLURMD_PORT": "16818", "DOCTUNE_SLURM_DBD_PORT": "16819",
        "DOCTUNE_SLURM_MYSQL_PORT": "13307", "DOCTUNE_SLURM_KILL_WAIT": "30", "DOCTUNE_SLURM_GPUS": "2"})
    other = ds.ClusterConfig.from_env()
    if any(ds.status(other)[d] for d in ("slurmctld", "slurmd")):
        pytest.skip(f"another doctune SLURM cluster runs from {other.state_dir}; stop it first "
                    "(scripts/slurm_cluster.sh stop)")
    try:
        t0 = time.monotonic()
        paths = ds.start(cfg, install=False)
        ds.start(cfg, install=False)  # idempotent
        startup = time.monotonic() - t0
        env = _env({"SLURM_CONF": str(paths.slurm_conf)})
        yield {"cfg": cfg, "paths": paths, "env": env, "startup_s": startup}
    finally:
        ds.stop(cfg)
        assert all(v is None for k, v in ds.status(cfg).items() if k != "node")
        shutil.rmtree(state, ignore_errors=True)


def _since() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))


def _demo_config(work: Path, gpus: int = 1, **training) -> str:
    """config/tiny.yaml cut to what the profile's paths need, with training on one (fake) GPU so
    the GPU path of the profile is exercised: every rule kind runs (documents, instruct data, the
    three arms and the 2-point sweep's arms on the GPU, one post-training, completions, a judged
    benchmark and a log-prob one, the scoring and stats groups, the dose-response table), but with
    two benchmarks and one post-trained arm. Inside a
    group submission the packed jobs run one after another (about 7 s each on the 2-CPU test node),
    and the executor plugin checks on a running job less and less often (10 s more each time), so
    the whole tiny config took 12.5 minutes here and this cut takes 10."""
    cfg = yaml.safe_load((work / "config" / "tiny.yaml").read_text())
    cfg["benchmarks"] = {b: cfg["benchmarks"][b] for b in ("ahb", "power_seeking")}
    cfg["posttrain"]["arms"] = ["doc"]
    cfg["stats"]["comparisons"] = [{"a": "doc", "b": "instruct"}, {"a": "doc", "b": "control"}]
    cfg["training"].setdefault("resources", {})["gpu"] = gpus
    cfg["training"].update(training)
    if "max_steps" in training:     # an arm's own token budget would win over the steps asked for here
        for arm in cfg["arms"].values():
            (arm.get("training") or {}).pop("max_tokens", None)
    path = work / "config" / "slurm_test.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path.relative_to(work))


SLURM_ARGS = ["--profile", "slurm", "--slurm-init-seconds-before-status-checks", "2",
              # the test node has 2 CPUs: cap threads and what one group submission asks for
              "--cores", "2", "--resources", "gpu=1", "mem_mb=8000"]


@pytest.mark.slurm
def test_cluster_runs_gpu_job(cluster):
    out = subprocess.run(["srun", "--gres=gpu:1", "--mem=100", "bash", "-c", "echo $CUDA_VISIBLE_DEVICES"],
                         env=cluster["env"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
    two = subprocess.run(["srun", "--gres=gpu:2", "--mem=100", "bash", "-c", "echo $CUDA_VISIBLE_DEVICES"],
                         env=cluster["env"], capture_output=True, text=True, timeout=120)
    assert two.returncode == 0 and two.stdout.strip() == "0,1", two.stderr


@pytest.fixture(scope="module")
def demo_on_slurm(cluster, tmp_path_factory):
    """The cut tiny DAG (_demo_config) through `--profile slurm` in a copy of the repository
    (training on a fake GPU)."""
    work = copy_repo(tmp_path_factory.mktemp("slurm_demo"))
    configfile = _demo_config(work)
    since, after = _since(), last_jobid(cluster["env"])
    env = {**cluster["env"], "DOCTUNE_SLURM_PARTITION": cluster["cfg"].partition,
           "DOCTUNE_SLURM_ACCOUNT": cluster["cfg"].account}
    t0 = time.monotonic()
    smk(work, "results/summary.tsv", "--configfile", configfile, *SLURM_ARGS, env=env, timeout=1200)
    return {"work": work, "since": since, "after": after, "elapsed": time.monotonic() - t0}


@pytest.mark.slurm
def test_demo_dag_on_slurm(cluster, demo_on_slurm):
    work = demo_on_slurm["work"]
    assert (work / RUN / "results" / "summary.tsv").stat().st_size > 0
    jobs = sacct(cluster["env"], demo_on_slurm["since"], demo_on_slurm["after"])
    assert jobs, "sacct recorded no jobs"
    assert all(j["state"] == "COMPLETED" for j in jobs), jobs
    assert {j["partition"] for j in jobs} == {cluster["cfg"].partition}
    assert {j["account"] for j in jobs} == {cluster["cfg"].account}
    train = [j for j in jobs if j["comment"].startswith("rule_train_arm")]
    assert train, [j["comment"] for j in jobs]
    for j in train:  # a GPU rule got its GPU and the memory its config asked for
        assert "gres/gpu=1" in j["tres"], j
        assert "mem=4000M" in j["tres"], j
    assert not any("gres/gpu" in j["tres"] for j in jobs if j["comment"].startswith("rule_completions"))
    # the tiny config's 2-point sweep: each point is its own training job with its GPU, and the
    # dose-response table (which the summary reads) comes out
    points = [j for j in train if "doc~n_docs=" in j["comment"]]
    assert len(points) == 2 and len({j["id"] for j in points}) == 2, [j["comment"] for j in train]
    dose = (work / RUN / "results" / "stats" / "dose_response.tsv").read_text()
    assert "doc~n_docs=2" in dose and "doc~n_docs=4" in dose
    # small jobs were packed: fewer SLURM jobs than Snakemake jobs, and group submissions exist
    prof = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    groups = [j for j in jobs if any(j["comment"].startswith(f"rule_{g}_") for g in prof["group-components"])]
    assert groups, [j["comment"] for j in jobs]
    n_smk = len(list((work / RUN / "results" / "benchmarks").rglob("*.tsv")))
    assert len(jobs) < n_smk, (len(jobs), n_smk)
    # per-job SLURM logs are kept where the profile says
    assert list((work / RUN / ".snakemake" / "slurm_logs").rglob("*.log"))
    print(f"cluster start {cluster['startup_s']:.1f}s; demo DAG on SLURM {demo_on_slurm['elapsed']:.0f}s, "
          f"{len(jobs)} SLURM jobs for {n_smk} Snakemake jobs")


def _wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


STEPS = 1500  # ~25 s of training for the tiny model at one thread: time to cancel it after a checkpoint


def _train_and_scancel(cluster, work: Path, arm: str, gpus: int) -> tuple[list[dict], dict]:
    """Retrain one arm for longer through the profile, scancel its job after the first checkpoint
    and let the profile's retry finish it. Returns the SLURM jobs and the final trainer_state."""
    configfile = _demo_config(work, gpus=gpus, max_steps=STEPS, save_every=10, save_total_limit=2)
    target = f"results/models/{arm}/model.json"
    args = [a if a != "gpu=1" else f"gpu={gpus}" for a in SLURM_ARGS]
    since, after = _since(), last_jobid(cluster["env"])
    proc = subprocess.Popen(SNAKEMAKE + [target, "--configfile", configfile, *args], cwd=work,
                            env=_env(cluster["env"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        ck = work / RUN / "results" / "models" / arm / "checkpoints"

        def running_train_job():
            if not any(ck.glob("step-*")):
                return None
            out = subprocess.run(["squeue", "-h", "-t", "RUNNING", "-o", "%i|%k"], env=cluster["env"],
                                 capture_output=True, text=True, timeout=60).stdout
            rows = [line.split("|")[0] for line in out.splitlines() if "|rule_train_arm" in line]
            return rows[0] if rows else None
        jobid = _wait_for(running_train_job, 600, "a training checkpoint")
        subprocess.run(["scancel", jobid], env=cluster["env"], check=True)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=120)
    assert proc.returncode == 0, out[-6000:]
    state = json.loads((work / RUN / "results" / "models" / arm / "trainer_state.json").read_text())
    return sacct(cluster["env"], since, after), state


@pytest.mark.slurm
def test_preempted_training_resumes(cluster, demo_on_slurm):
    """After the demo run, retrain one arm for longer and scancel its job after the first
    checkpoint: the profile's retry resubmits it, it resumes from the checkpoint, and nothing
    else runs again."""
    jobs, state = _train_and_scancel(cluster, demo_on_slurm["work"], "doc", gpus=1)
    assert len(jobs) == 2 and all(j["comment"].startswith("rule_train_arm") for j in jobs), jobs  # nothing else
    assert jobs[0]["state"].startswith("CANCELLED") and jobs[1]["state"] == "COMPLETED", jobs
    # the retried job resumed from the checkpoint instead of starting over
    assert state["finished"] and state["global_step"] == STEPS, state
    assert state["resumes"] and 0 < state["resumes"][0] < STEPS, state["resumes"]
    assert state["world_size"] == 1


@pytest.mark.slurm
def test_two_gpu_training_on_slurm_is_preempted_and_resumes(cluster, demo_on_slurm):
    """training.resources.gpu: 2 -> the job gets two GPUs, the rule trains under `accelerate launch`
    with two ranks (gloo here: the GPUs are fake), a scancel stops both ranks at one checkpoint, and
    the retried job resumes from it with two ranks again."""
    jobs, state = _train_and_scancel(cluster, demo_on_slurm["work"], "control", gpus=2)
    assert len(jobs) == 2 and all(j["comment"].startswith("rule_train_arm") for j in jobs), jobs
    assert all("gres/gpu=2" in j["tres"] for j in jobs), jobs
    assert jobs[0]["state"].startswith("CANCELLED") and jobs[1]["state"] == "COMPLETED", jobs
    assert state["finished"] and state["global_step"] == STEPS and state["world_size"] == 2, state
    assert state["resumes"] and 0 < state["resumes"][0] < STEPS, state["resumes"]
