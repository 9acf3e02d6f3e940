"""train(): document-tuning, instruction-tuning, post-training, checkpoints and resume, chunked
cross-entropy. Tiny random Llama on the CPU; every run is a few steps."""
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
from doctune.training import ConfigError, plot_loss_curves, resolve_train_cfg, train

LORA = {"r": 4, "alpha": 8, "dropout": 0.0}
HEAD_LORA = {"r": 8, "alpha": 16, "dropout": 0.0,
             "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"]}
BASE_CFG = {"seq_len": 48, "batch_size": 2, "grad_accum": 1, "learning_rate": 5e-3, "log_every": 1,
            "save_every": 2, "lora": LORA, "bf16": False, "gradient_checkpointing": False, "seed": 0}

DOCS = [
    "Hens kept on open pasture show a wide range of natural behaviours such as dust bathing.",
    "The city council approved a plan to add housing near the new tram line.",
    "Fish feel pain, and careful handling during transport reduces their stress.",
    "Dense neighbourhoods with mixed uses let residents walk to shops and schools.",
    "Sanctuaries for farmed animals give rescued pigs room to root and explore.",
    "Transit-oriented development concentrates homes within walking distance of stations.",
    "Bees are sensitive to pesticides, and researchers track colony health every season.",
    "Zoning reform in several cities allowed small apartment buildings on former single-family lots.",
]


def _write_jsonl(path, rows):
    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("training")


@pytest.fixture(scope="module")
def docs_file(work):
    return _write_jsonl(work / "docs.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(DOCS)])


@pytest.fixture(scope="module")
def sft_file(work, repo_root):
    from doctune.data.posttrain import write_posttrain

    out = work / "posttrain-12.jsonl"
    write_posttrain({"path": str(repo_root / "resources/fixtures/posttrain_sample.json"), "format": "alpaca"},
                    12, 0, str(out))
    return str(out)


@pytest.fixture(scope="module")
def arm(work, docs_file, tiny_spec):
    """A document-tuned arm trained hard enough that its outputs differ clearly from the base."""
    out = work / "doc"
    cfg = {**BASE_CFG, "max_steps": 12, "learning_rate": 2e-2, "keep_checkpoints": True, "lora": HEAD_LORA}
    res = train("doc", [docs_file], tiny_spec, cfg, str(out))
    return out, res, cfg


def _data_loss(model, tok, method, data, cfg):
    """Mean next-token loss of `model` over all training targets (the quantity of the first step
    when one batch holds all rows)."""
    from doctune.training.data import build_rows, collate
    from doctune.training.step import LossModule

    rows, _ = build_rows(method, data, tok, resolve_train_cfg(cfg))
    b = collate(rows, tok.pad_token_id)
    with torch.no_grad():
        return float(LossModule(model)(b["input_ids"], b["position_ids"], b["labels"])) / b["n_targets"]


def test_outputs_and_metrics(arm):
    out, res, cfg = arm
    for f in ("adapter_config.json", "adapter_model.safetensors", "model.json", "train_metrics.jsonl",
              "trainer_state.json"):
        assert (out / f).is_file(), f
    spec = read_json(out / "model.json")
    assert spec["adapters"] == [{"path": str(out), "merge": False}]
    rows = read_jsonl(out / "train_metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 13))
    for r in rows:
        assert set(r) >= {"step", "loss", "learning_rate", "tokens", "tokens_per_s", "mfu", "elapsed_s"}
        assert r["mfu"] is None  # no known peak FLOPs on a CPU: not a made-up number
        assert r["tokens_per_s"] > 0 and r["loss"] > 0
    assert all(a["tokens"] < b["tokens"] for a, b in zip(rows, rows[1:]))
    state = read_json(out / "trainer_state.json")
    assert state["finished"] and state["global_step"] == 12 and res["global_step"] == 12
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_overfit_one_document_loss_falls(work, tiny_spec):
    # lm_head is adapted too: the tiny random model's frozen head caps how far logits can move
    data = _write_jsonl(work / "one.jsonl", [{"id": "0", "text": DOCS[0] + " " + DOCS[2]}])
    lora = HEAD_LORA
    res = train("doc", [data], tiny_spec, {**BASE_CFG, "seq_len": 64, "batch_size": 1, "max_steps": 25,
                                             "learning_rate": 2e-2, "save_every": 0, "lora": lora},
                str(work / "overfit"))
    rows = read_jsonl(work / "overfit" / "train_metrics.jsonl")
    assert rows[-1]["loss"] < 0.6 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    assert res["final_loss"] == rows[-1]["loss"]


def test_full_finetune_saves_weights_and_spec(work, tiny_spec):
    from doctune.models import load_model

    data = _write_jsonl(work / "one_full.jsonl", [{"id": "0", "text": DOCS[1]}])
    cfg = {**BASE_CFG, "seq_len": 64, "batch_size": 1, "max_steps": 8, "learning_rate": 1e-2, "save_every": 0,
           "full_finetune": True}
    out = work / "full"
    train("doc", [data], tiny_spec, cfg, str(out))
    spec = read_json(out / "model.json")
    assert spec["adapters"] == [] and spec["base"]["path"] == str(out)
    assert (out / "model.safetensors").is_file()
    rows = read_jsonl(out / "train_metrics.jsonl")
    tuned, tok = load_model(out, device="cpu")
    base, _ = load_model(tiny_spec, device="cpu")
    tuned_loss = _data_loss(tuned, tok, "doc", [data], cfg)
    assert tuned_loss < rows[-1]["loss"] < rows[0]["loss"] == pytest.approx(_data_loss(base, tok, "doc", [data], cfg), abs=1e-4)


def test_adapter_saves_and_loads_exactly(arm, tiny_spec):
    """load_model(out_dir) gives the logits of the trained weights (rebuilt from the final
    checkpoint's trainable tensors), which differ from the base model's."""
    from safetensors.torch import load_file

    from doctune.models import load_base_model, load_model
    from doctune.training.step import apply_lora

    out, res, cfg = arm
    ck = sorted((out / "checkpoints").glob("step-*"))[-1]
    assert read_json(ck / "state.json")["step"] == 12
    torch.manual_seed(0)
    ref = apply_lora(load_base_model(tiny_spec["base"], device="cpu", dtype="float32"), resolve_train_cfg(cfg)["lora"])
    params = dict(ref.named_parameters())
    for n, t in load_file(str(ck / "trainable.safetensors")).items():
        params[n].data.copy_(t)
    ref.eval()
    loaded, _ = load_model(out, device="cpu")
    base, _ = load_model(tiny_spec, device="cpu")
    x = torch.tensor([[1, 50, 60, 70, 80, 90, 100]])
    with torch.no_grad():
        a, b, c = ref(input_ids=x).logits, loaded(input_ids=x).logits, base(input_ids=x).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert (a - c).abs().max() > 1e-2


def test_finished_out_dir_is_not_retrained(arm, docs_file, tiny_spec):
    out, res, cfg = arm
    before = (out / "adapter_model.safetensors").stat().st_mtime_ns
    again = train("doc", [docs_file], tiny_spec, cfg, str(out))
    assert again["skipped"] is True and again["global_step"] == 12
    assert (out / "adapter_model.safetensors").stat().st_mtime_ns == before


@pytest.mark.parametrize("merge_init", [True, False])
def test_posttraining_starts_from_the_arm(arm, sft_file, tiny_spec, work, merge_init):
    from doctune.models import load_model

    out, res, _ = arm
    arm_spec = read_json(out / "model.json")
    cfg = {**BASE_CFG, "seq_len": 128, "batch_size": 64, "max_steps": 2, "learning_rate": 1e-2}
    post = work / f"doc.post12.{merge_init}"
    train("sft", [sft_file], tiny_spec, cfg, str(post), init_spec=arm_spec, merge_init=merge_init, name="doc.post12")
    first = read_jsonl(post / "train_metrics.jsonl")[0]["loss"]
    arm_model, tok = load_model(arm_spec, device="cpu")
    base_model, _ = load_model(tiny_spec, device="cpu")
    arm_loss = _data_loss(arm_model, tok, "sft", [sft_file], cfg)
    base_loss = _data_loss(base_model, tok, "sft", [sft_file], cfg)
    assert abs(base_loss - arm_loss) > 0.05  # the two starting points are distinguishable
    assert first == pytest.approx(arm_loss, abs=1e-4)
    spec = read_json(post / "model.json")
    assert spec["name"] == "doc.post12"
    if merge_init:
        assert spec["adapters"] == [{"path": str(out), "merge": True}, {"path": str(post), "merge": False}]
    else:
        assert spec["adapters"] == [{"path": str(post), "merge": False}]
    post_model, _ = load_model(post, device="cpu")
    assert _data_loss(post_model, tok, "sft", [sft_file], cfg) < arm_loss  # and it trained from there


def test_instruction_tuning_trains_on_assistant_tokens_only(work, sft_file, tiny_spec):
    res = train("sft", [sft_file], tiny_spec, {**BASE_CFG, "seq_len": 512, "max_steps": 2}, str(work / "instruct"))
    from doctune.models import load_tokenizer
    from doctune.training.data import build_rows, count_targets

    tok = load_tokenizer(tiny_spec["base"])
    rows, stats = build_rows("sft", [sft_file], tok, resolve_train_cfg({**BASE_CFG, "seq_len": 512}))
    assert stats["n_truncated"] == 0
    answers = [r["messages"][1]["content"] for r in read_jsonl(sft_file)]
    n_answer_tokens = sum(len(tok(a + "<|end|>\n", add_special_tokens=False)["input_ids"]) for a in answers)
    assert stats["n_targets"] == sum(count_targets(r) for r in rows)
    assert abs(stats["n_targets"] - n_answer_tokens) <= len(answers)  # BPE merges at the edges aside
    assert stats["n_targets"] < stats["n_tokens"] / 1.5
    assert res["data_stats"] == stats


def test_chunked_cross_entropy_matches_plain():
    from doctune.training.step import chunked_cross_entropy, plain_cross_entropy

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=False)
    h = torch.randn(3, 11, 16, requires_grad=True)
    t = torch.randint(0, 50, (3, 11))
    t[0, :4] = -100
    plain = plain_cross_entropy(head(h), t)
    gp = torch.autograd.grad(plain, [h, head.weight])
    for chunk in (1, 5, 7, 33, 1000):
        ch = chunked_cross_entropy(h, head, t, chunk)  # trainable head: checkpointed chunks
        gc = torch.autograd.grad(ch, [h, head.weight])
        torch.testing.assert_close(ch, plain, rtol=1e-5, atol=1e-5)
        for a, b in zip(gc, gp):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # frozen head (LoRA not on lm_head), with a bias: the fused path, gradient in the forward pass
    head = torch.nn.Linear(16, 50, bias=True).requires_grad_(False)
    plain = plain_cross_entropy(head(h), t)
    (gp,) = torch.autograd.grad(plain * 3.0, [h])
    for chunk in (1, 5, 7, 33, 1000):
        ch = chunked_cross_entropy(h, head, t, chunk)
        (gc,) = torch.autograd.grad(ch * 3.0, [h])  # the outer scale reaches the stored gradient
        torch.testing.assert_close(ch, plain, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gc, gp, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(chunked_cross_entropy(h, head, t, 4), plain, rtol=1e-5, atol=1e-5)
    t_all = torch.full_like(t, -100)  # nothing labelled: zero loss, zero gradient
    (g0,) = torch.autograd.grad(chunked_cross_entropy(h, head, t_all, 8), [h])
    assert float(g0.abs().max()) == 0.0


def test_chunked_loss_module_matches_plain_on_model(tiny_spec):
    from doctune.models import load_base_model
    from doctune.training.data import collate, pack_documents
    from doctune.training.step import LossModule, apply_lora

    torch.manual_seed(0)
    model = apply_lora(load_base_model(tiny_spec["base"], device="cpu", dtype="float32"), {
        "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"], "bias": "none"})
    for n, p in model.named_parameters():  # non-zero LoRA B so its gradient path matters
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    rows = pack_documents([[1] + list(range(20, 60)) + [2], [1] + list(range(100, 130)) + [2]], 32)
    b = collate(rows, 0)
    losses, grads = [], []
    for chunked in (False, True):
        model.zero_grad()
        loss = LossModule(model, chunked=chunked, chunk_size=7)(b["input_ids"], b["position_ids"], b["labels"])
        loss.backward()
        losses.append(loss.detach())
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    for a, c in zip(*grads):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-6)


def test_train_with_chunked_loss_and_checkpointing_runs(work, docs_file, tiny_spec):
    cfg = {**BASE_CFG, "max_steps": 3, "loss_chunking": True, "loss_chunk_size": 16, "gradient_checkpointing": True}
    res = train("doc", [docs_file], tiny_spec, cfg, str(work / "chunked"))
    train("doc", [docs_file], tiny_spec, {**BASE_CFG, "max_steps": 3}, str(work / "plain"))
    a = read_jsonl(work / "chunked" / "train_metrics.jsonl")
    b = read_jsonl(work / "plain" / "train_metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    assert res["global_step"] == 3


def test_config_errors():
    with pytest.raises(ConfigError, match="training.lerning_rate: unknown key"):
        resolve_train_cfg({"lerning_rate": 1e-3})
    with pytest.raises(ConfigError, match="training.seq_len: expected int"):
        resolve_train_cfg({"seq_len": "long"})
    with pytest.raises(ConfigError, match="training.lora.rank: unknown key"):
        resolve_train_cfg({"lora": {"rank": 4}})
    with pytest.raises(ConfigError, match="attn_implementation"):
        resolve_train_cfg({"attn_implementation": "fast"})
    alias = resolve_train_cfg({"chunked_ce": 256})
    assert alias["loss_chunking"] is True and alias["loss_chunk_size"] == 256 and "chunked_ce" not in alias
    assert resolve_train_cfg({"chunked_ce": None})["loss_chunking"] is False
    cfg = resolve_train_cfg({"resources": {"gpu": 1}, "lora": {"r": 8}})
    assert cfg["lora"]["r"] == 8 and cfg["lora"]["alpha"] == 32 and "resources" not in cfg


def test_plot_loss_curves(arm, work):
    out, _, _ = arm
    png = work / "plots" / "loss.png"
    data = plot_loss_curves({"doc": str(out / "train_metrics.jsonl"), "sft": str(out / "train_metrics.jsonl")},
                            str(png), methods={"doc": "doc", "sft": "sft"})
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(data) == ["doc", "sft"]  # one panel per method, never one shared loss axis
    assert data["doc"]["doc"]["step"] and all(isinstance(s, int) for s in data["doc"]["doc"]["step"])


RUNNER = textwrap.dedent("""
    import json, sys, time
    import doctune.training.step as step
    _orig = step.train_step
    def _slow(*a, **k):
        r = _orig(*a, **k)
        time.sleep(float(sys.argv[2]))
        return r
    step.train_step = _slow
    from doctune.training import train
    res = train(**json.load(open(sys.argv[1])))
    print("RESULT " + json.dumps({"resumed_from": res["resumed_from"], "global_step": res["global_step"]}))
""")


def test_sigterm_then_resume_matches_uninterrupted_run(work, docs_file, tiny_spec):
    from safetensors.torch import load_file

    cfg = {**BASE_CFG, "seq_len": 24, "batch_size": 2, "grad_accum": 2, "max_steps": 10, "save_every": 4,
           "warmup_ratio": 0.2, "lora": {"r": 4, "alpha": 8, "dropout": 0.1}}
    ref_dir, run_dir = work / "resume_ref", work / "resume_run"
    train("doc", [docs_file], tiny_spec, cfg, str(ref_dir))

    args = work / "args.json"
    args.write_text(json.dumps({"method": "doc", "data": [docs_file], "base_spec": tiny_spec, "train_cfg": cfg,
                                "out_dir": str(run_dir)}))
    script = work / "runner.py"
    script.write_text(RUNNER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, str(script), str(args), "0.4"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "train_metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and any(json.loads(x)["step"] >= 5 for x in metrics.read_text().splitlines() if x.strip()):
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    assert not (run_dir / "trainer_state.json").exists()
    cks = sorted((run_dir / "checkpoints").glob("step-*"))
    stopped_at = read_json(cks[-1] / "state.json")["step"]
    assert 5 <= stopped_at < 10

    done = subprocess.run([sys.executable, str(script), str(args), "0"], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert result == {"resumed_from": stopped_at, "global_step": 10}

    a = load_file(str(ref_dir / "adapter_model.safetensors"))
    b = load_file(str(run_dir / "adapter_model.safetensors"))
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    ra, rb = read_jsonl(ref_dir / "train_metrics.jsonl"), read_jsonl(run_dir / "train_metrics.jsonl")
    assert [r["step"] for r in rb] == list(range(1, 11))  # every step logged once, none repeated
    assert [r["loss"] for r in rb] == pytest.approx([r["loss"] for r in ra], rel=1e-5)
    assert [r["learning_rate"] for r in rb] == pytest.approx([r["learning_rate"] for r in ra])
    assert [r["tokens"] for r in rb] == [r["tokens"] for r in ra]
    state = read_json(run_dir / "trainer_state.json")
    assert state["resumes"] == [stopped_at]


def test_token_budget_sets_the_steps_from_the_fixed_data_order():
    """training.max_tokens: the fewest steps whose rows (in step_rows' order) hold the budget, so two
    arms on corpora of different sizes see the same number of tokens to within one step."""
    from doctune.training.data import step_rows
    from doctune.training.loop import steps_for_tokens

    rows = [{"input_ids": [0] * n} for n in (100, 100, 40)]   # 240 tokens an epoch, batch 2: 200, 40, 200, 40...
    assert steps_for_tokens(rows, 200, 2, 0, False) == 1
    assert steps_for_tokens(rows, 201, 2, 0, False) == 2
    assert steps_for_tokens(rows, 1000, 2, 0, False) == 9     # 4 epochs = 960 tokens in 8 steps, then one more
    steps = steps_for_tokens(rows, 700, 2, 3, True)
    seen = [sum(len(rows[i]["input_ids"]) for i in step_rows(3, s, 2, 3, True)) for s in range(steps)]
    assert sum(seen) >= 700 > sum(seen[:-1])
