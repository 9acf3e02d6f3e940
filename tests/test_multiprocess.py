"""Data-parallel training through `accelerate launch` (the path a rule takes when its `gpu` resource
is above 1), run here as two CPU processes over gloo: the same update as one process with gradient
accumulation, and preemption of all ranks with a resume that ends on the same weights."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from doctune.io import read_json, read_jsonl
from doctune.workflow.pipeline import accelerate_command, launch_training
from doctune.training import train

pytestmark = pytest.mark.slow   # minutes: make test runs it, make test-fast leaves it out

DOCS = [f"Document {i}: hens on pasture, trams in dense neighbourhoods, and bees counted each season {i * 7}."
        for i in range(24)]
CFG = {"seq_len": 24, "batch_size": 1, "grad_accum": 1, "learning_rate": 5e-3, "log_every": 1, "save_every": 2,
       "max_steps": 8, "warmup_ratio": 0.25, "lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "bf16": False,
       "gradient_checkpointing": False, "seed": 0}

RUNNER = textwrap.dedent("""
    import json, os, sys, time
    if "LOCAL_RANK" in os.environ:  # one rank: slow each optimizer step so the test can stop it midway
        out = os.path.dirname(sys.argv[2])  # argv: train OUT_DIR/.train_args.json
        open(os.path.join(out, "pid-" + os.environ["LOCAL_RANK"]), "w").write(str(os.getpid()))
        from doctune.training import step
        _orig = step.train_step
        def _slow(*a, **k):
            time.sleep(float(os.environ.get("DOCTUNE_TEST_STEP_DELAY", "0")))
            return _orig(*a, **k)
        step.train_step = _slow
        from doctune.workflow.pipeline import main
        main(sys.argv[1:])
    else:  # the rule's process
        from doctune.workflow.pipeline import launch_training, setup_logging
        setup_logging(None)
        launch_training(json.load(open(sys.argv[1])), 2, entry=[os.path.abspath(__file__)])
""")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    w = tmp_path_factory.mktemp("multiprocess")
    (w / "docs.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(DOCS)))
    (w / "runner.py").write_text(RUNNER)
    return w


def _kwargs(work, tiny_spec, out, **over):
    return {"method": "doc", "data": [str(work / "docs.jsonl")], "base_spec": tiny_spec,
            "train_cfg": {**CFG, **over}, "out_dir": str(out)}


@pytest.fixture(scope="module")
def reference(work, tiny_spec):
    """One process, global batch 2 as two accumulated micro-batches of 1."""
    out = work / "one_process"
    train(**_kwargs(work, tiny_spec, out, grad_accum=2))
    return out


def _env(delay: float = 0.0) -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
            "DOCTUNE_TEST_STEP_DELAY": str(delay)}


def _assert_same_weights(a_dir: Path, b_dir: Path):
    from safetensors.torch import load_file

    a = load_file(str(a_dir / "adapter_model.safetensors"))
    b = load_file(str(b_dir / "adapter_model.safetensors"))
    assert set(a) == set(b) and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_accelerate_command_is_explicit():
    cmd = accelerate_command("/x/args.json", 4)
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    def opt(flag):
        return cmd[cmd.index(flag) + 1]

    assert opt("--num_processes") == "4" and opt("--num_machines") == "1"
    assert 0 < int(opt("--main_process_port")) < 65536  # a free port of its own, not the shared default
    assert cmd[-4:] == ["-m", "doctune.workflow.pipeline", "train", "/x/args.json"]


def test_two_processes_make_the_same_update_as_one(work, tiny_spec, reference, monkeypatch):
    for k, v in _env().items():
        monkeypatch.setenv(k, v)
    out = work / "two_processes"
    launch_training(_kwargs(work, tiny_spec, out), 2)
    state = read_json(out / "trainer_state.json")
    assert state["finished"] and state["world_size"] == 2 and state["global_step"] == 8
    assert state["global_batch_rows"] == read_json(reference / "trainer_state.json")["global_batch_rows"] == 2
    m2, m1 = read_jsonl(out / "train_metrics.jsonl"), read_jsonl(reference / "train_metrics.jsonl")
    assert [r["step"] for r in m2] == list(range(1, 9))  # rank 0 alone writes the log
    assert [r["tokens"] for r in m2] == [r["tokens"] for r in m1]
    assert [r["loss"] for r in m2] == pytest.approx([r["loss"] for r in m1], rel=1e-4)
    _assert_same_weights(reference, out)
    assert read_json(out / "model.json")["adapters"] == [{"path": str(out), "merge": False}]


def _stop_midway(work, tiny_spec, out: Path, kill, expect_code: int | None) -> int:
    args = work / f"{out.name}.json"
    args.write_text(json.dumps(_kwargs(work, tiny_spec, out)))
    proc = subprocess.Popen([sys.executable, str(work / "runner.py"), str(args)], env=_env(0.4),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "train_metrics.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and any(json.loads(x)["step"] >= 3 for x in metrics.read_text().splitlines() if x.strip()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    kill(proc)
    _, err = proc.communicate(timeout=120)  # a rank left waiting on the other would hang here
    assert proc.returncode == expect_code if expect_code is not None else proc.returncode != 0, err[-3000:]
    assert not (out / "trainer_state.json").exists()
    cks = sorted((out / "checkpoints").glob("step-*"))
    stopped_at = read_json(cks[-1] / "state.json")["step"]
    assert 3 <= stopped_at < 8
    assert sorted(p.name for p in cks[-1].glob("rng-*.pt")) == ["rng-0.pt", "rng-1.pt"]  # both ranks saved
    done = subprocess.run([sys.executable, str(work / "runner.py"), str(args)], env=_env(0), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return stopped_at


def _signal_rank(out: Path, rank: int, sig):
    def kill(proc):
        os.kill(int((out / f"pid-{rank}").read_text()), sig)
    return kill


@pytest.mark.parametrize("how", ["all_processes_SIGTERM", "parent_only_SIGUSR1", "one_rank_SIGTERM"])
def test_preempted_ranks_resume_to_the_same_weights(work, tiny_spec, reference, how):
    """SLURM signals every process of the job (or, with --signal=B:USR1, the batch step only); a
    signal may also reach one rank a step before the other. Every way, all ranks stop after the same
    step and save one checkpoint (without that agreement the ranks deadlock), and a rerun resumes
    from it to the weights of an uninterrupted run."""
    out = work / how
    if how == "all_processes_SIGTERM":
        kill, code = (lambda p: os.killpg(p.pid, signal.SIGTERM)), 143
    elif how == "parent_only_SIGUSR1":
        kill, code = (lambda p: p.send_signal(signal.SIGUSR1)), 143
    else:  # the launcher sees a rank fail and the job fails; the checkpoint is whole all the same
        kill, code = _signal_rank(out, 1, signal.SIGTERM), None
    stopped_at = _stop_midway(work, tiny_spec, out, kill, code)
    state = read_json(out / "trainer_state.json")
    assert state["finished"] and state["world_size"] == 2 and state["resumes"] == [stopped_at]
    rows = read_jsonl(out / "train_metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in read_jsonl(reference / "train_metrics.jsonl")],
                                                      rel=1e-4)
    _assert_same_weights(reference, out)
