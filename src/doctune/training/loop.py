"""`train()`: document-tuning, instruction-tuning and post-training with resumable checkpoints.

The same code runs single-process on a CPU and multi-process under `accelerate launch`
(accelerate.Accelerator: DDP, bf16 autocast, gradient sync only on the last micro-batch)."""
from __future__ import annotations

import logging
import math
import os
import random
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..io import DataError, atomic_write_json, atomic_write_text, read_json, sha256_file, stable_hash
from .config import resolve_train_cfg
from .data import build_rows, collate, step_rows

log = logging.getLogger(__name__)

# train_cfg keys that change speed or bookkeeping but not what is learned: a run preempted under
# one setting may resume under another.
PERF_KEYS = {"log_every", "save_every", "save_total_limit", "keep_checkpoints", "compile", "gradient_checkpointing",
             "fused_adamw", "loss_chunking", "loss_chunk_size", "peak_tflops", "attn_implementation"}
STOP_SIGNALS = ("SIGTERM", "SIGUSR1")
EXIT_PREEMPTED = 143


class Preempted(SystemExit):
    """Raised after a stop signal once a checkpoint is saved; exit status 143 (128 + SIGTERM)."""

    def __init__(self, step: int):
        super().__init__(EXIT_PREEMPTED)
        self.step = step


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def _fingerprint(method: str, data: list[str], base_spec: dict, init_spec: dict | None, merge_init: bool,
                 cfg: dict) -> str:
    return stable_hash({
        "method": method,
        "data": [sha256_file(p) for p in data],
        "base": base_spec.get("base"),
        "init": init_spec and {"base": init_spec.get("base"), "adapters": init_spec.get("adapters")},
        "merge_init": merge_init,
        "cfg": {k: v for k, v in cfg.items() if k not in PERF_KEYS},
    })


def _rng_state() -> dict:
    import torch

    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _checkpoints(out: Path) -> list[Path]:
    ck = out / "checkpoints"
    if not ck.is_dir():
        return []
    return sorted((p for p in ck.glob("step-*") if (p / "state.json").exists()), key=lambda p: int(p.name[5:]))


def save_checkpoint(accelerator, out: Path, model, optimizer, scheduler, state: dict, limit: int) -> Path:
    """checkpoints/step-N: trainable weights (safetensors), optimizer, scheduler, per-process RNG
    states and state.json (step, tokens, elapsed, fingerprint). Written to a temporary folder and
    renamed, so a kill never leaves a half checkpoint under a valid name."""
    import torch
    from safetensors.torch import save_file

    step = state["step"]
    ckdir = out / "checkpoints"
    final = ckdir / f"step-{step:08d}"
    tmp = ckdir / f".tmp-step-{step:08d}"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tensors = {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(tensors, str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_json(tmp / "state.json", state)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in _checkpoints(out)[:-max(limit, 1)]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator, ck: Path, model, optimizer, scheduler) -> dict:
    import torch
    from safetensors.torch import load_file

    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    saved = load_file(str(ck / "trainable.safetensors"))
    if set(saved) != set(params):
        raise DataError(f"{ck}: trainable parameters do not match the model being trained "
                        f"({len(saved)} saved, {len(params)} in the model)")
    with torch.no_grad():
        for n, t in saved.items():
            params[n].copy_(t.to(params[n].device, params[n].dtype))
    optimizer.load_state_dict(torch.load(ck / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(ck / "scheduler.pt", map_location="cpu", weights_only=True))
    rng = ck / f"rng-{accelerator.process_index}.pt"
    if rng.exists():
        _set_rng_state(torch.load(rng, weights_only=True))
    return read_json(ck / "state.json")


def make_micro_batches(rows: list[dict], idx: list[int], rank: int, world: int, batch_size: int, grad_accum: int,
                       pad_id: int, pad_to: int | None) -> list[dict]:
    """This process's micro-batches for one optimizer step. Under several processes every process
    runs grad_accum micro-batches (a placeholder of weight 0 where it has no rows left), so that
    all of them take part in every gradient synchronisation."""
    out = []
    for m in range(grad_accum):
        start = (m * world + rank) * batch_size
        sel = idx[start:start + batch_size]
        weight = 1
        if not sel:
            if world == 1 and m > 0:
                continue
            sel, weight = idx[:1], 0
        b = collate([rows[i] for i in sel], pad_id, pad_to)
        b["weight"] = weight
        out.append(b)
    return out


# ------------------------------------------------------------------------------------------------
# model
# ------------------------------------------------------------------------------------------------

def _build_model(source: dict, cfg: dict, init_adapters: list[dict], merge_init: bool, device: str, use_bf16: bool):
    """Base weights, the arm's adapters merged in (or the last one kept trainable when
    merge_init is False), then a fresh LoRA (or all weights trainable for full fine-tuning)."""
    from peft import PeftModel

    from ..models import load_base_model
    from .step import apply_lora

    base = dict(source["base"])
    if cfg["attn_implementation"]:
        base["attn_implementation"] = cfg["attn_implementation"]
    dtype = "bfloat16" if use_bf16 and not cfg["full_finetune"] else "float32"
    model = load_base_model(base, device=device, dtype=dtype)
    to_merge, cont = list(init_adapters), None
    if init_adapters and not merge_init:
        if cfg["full_finetune"]:
            raise ValueError("merge_init=False (continue the arm's adapter) cannot be combined with full_finetune")
        to_merge, cont = init_adapters[:-1], init_adapters[-1]
    for ad in to_merge:
        model = PeftModel.from_pretrained(model, ad["path"], is_trainable=False).merge_and_unload()
    if cfg["full_finetune"]:
        for p in model.parameters():
            p.requires_grad_(True)
    elif cont is not None:
        model = PeftModel.from_pretrained(model, cont["path"], is_trainable=True)
        log.info("continuing the arm's adapter %s (its own LoRA settings apply)", cont["path"])
    else:
        model = apply_lora(model, cfg["lora"])
    return model, to_merge, cont


# ------------------------------------------------------------------------------------------------
# train
# ------------------------------------------------------------------------------------------------

def steps_for_tokens(rows: list[dict], budget: int, global_batch: int, seed: int, shuffle: bool) -> int:
    """The fewest optimizer steps whose rows (in the fixed data order of ``step_rows``) hold at
    least ``budget`` tokens (the count train_metrics.jsonl and trainer_state.json report)."""
    from .data import step_rows

    sizes = [len(r["input_ids"]) for r in rows]
    if not sum(sizes):
        raise ValueError("steps_for_tokens: the rows hold no tokens")
    seen, step = 0, 0
    while seen < budget:
        seen += sum(sizes[i] for i in step_rows(len(rows), step, global_batch, seed, shuffle))
        step += 1
    return step


def train(method: str, data: list[str], base_spec: dict, train_cfg: dict, out_dir: str,
          init_spec: dict | None = None, merge_init: bool = True, name: str | None = None,
          tracking: dict | None = None, run_group: str | None = None) -> dict:
    """Train one model and write it to out_dir (see the package docstring). Returns a summary dict.

    A finished out_dir (trainer_state.json with finished=true and the same fingerprint of method,
    data checksums, model specs and learning-relevant settings) is not retrained; an unfinished one
    resumes from its latest matching checkpoint. SIGTERM/SIGUSR1 (SLURM preemption) saves a
    checkpoint after the current optimizer step and exits with status 143.

    `tracking` (the config's `tracking:` block) and `run_group` (the run_name) only send the
    train_metrics.jsonl lines and the result to wandb/trackio from the main process (see
    doctune.training.tracking); they are not part of the fingerprint or of any checkpoint, so
    turning tracking on or off never restarts a run."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from ..models import load_tokenizer
    from .step import LossModule, enable_gradient_checkpointing, flops_per_token, make_optimizer, \
        make_scheduler, peak_tflops, train_step

    if method not in ("doc", "sft"):
        raise ValueError(f"unknown training method {method!r} (expected 'doc' or 'sft')")
    cfg = resolve_train_cfg(train_cfg)
    data = [str(p) for p in ([data] if isinstance(data, (str, os.PathLike)) else data)]
    if not data:
        raise DataError("train(): no data files given")
    for p in data:
        if not Path(p).is_file():
            raise DataError(f"{p}: training data file not found")
    out = Path(out_dir)
    name = name or out.name
    fp = _fingerprint(method, data, base_spec, init_spec, merge_init, cfg)
    state_path = out / "trainer_state.json"
    if state_path.exists():
        st = read_json(state_path)
        if st.get("finished") and st.get("fingerprint") == fp and (out / "model.json").exists():
            log.info("%s: already trained (%s), not retraining", name, state_path)
            return {**st["result"], "skipped": True}
    from .tracking import Tracker, import_backend, open_tracker, resolve_tracking

    tracking = resolve_tracking(tracking)
    if tracking:
        import_backend(tracking["backend"])   # a missing package stops the run before any work

    cuda = torch.cuda.is_available()
    use_bf16 = bool(cfg["bf16"] and cuda and torch.cuda.is_bf16_supported())
    if cfg["bf16"] and not use_bf16:
        log.warning("training.bf16 is set but no bf16-capable CUDA device is present: training in float32")
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no", cpu=not cuda)
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    set_seed(cfg["seed"])

    source = init_spec or base_spec
    tok = load_tokenizer(source["base"])
    rows, stats = build_rows(method, data, tok, cfg)
    if stats["n_truncated"]:
        log.warning("%s: %d of %d examples were longer than seq_len=%d and were truncated", name,
                    stats["n_truncated"], stats["n_examples"], cfg["seq_len"])
    init_adapters = list((init_spec or {}).get("adapters") or [])
    model, merged, cont = _build_model(source, cfg, init_adapters, merge_init, str(accelerator.device), use_bf16)
    if cfg["gradient_checkpointing"]:
        enable_gradient_checkpointing(model)
    model.train()
    is_lora = not cfg["full_finetune"]
    flat = str(cfg["attn_implementation"] or "").startswith("flash")
    loss_module = LossModule(model, chunked=cfg["loss_chunking"], chunk_size=cfg["loss_chunk_size"], flatten=flat)

    global_batch = cfg["batch_size"] * cfg["grad_accum"] * world
    steps_per_epoch = math.ceil(len(rows) / global_batch)
    total = cfg["max_steps"] or max(1, math.ceil(cfg["epochs"] * steps_per_epoch))
    if cfg["max_tokens"]:
        total = steps_for_tokens(rows, cfg["max_tokens"], global_batch, cfg["seed"], cfg["shuffle"])
        log.info("%s: %d optimizer steps reach the token budget of %d tokens", name, total, cfg["max_tokens"])
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total)
    params = [p for p in model.parameters() if p.requires_grad]
    fpt = flops_per_token(model, cfg["seq_len"], lora=is_lora)
    peak = peak_tflops(cfg["peak_tflops"])

    # resume
    step, tokens, elapsed_before, resumed_from = 0, 0, 0.0, None
    resumes: list[int] = []
    for ck in reversed(_checkpoints(out)):
        st = read_json(ck / "state.json")
        if st.get("fingerprint") != fp:
            log.warning("%s: ignoring checkpoint %s made with other data or settings", name, ck)
            continue
        if st.get("world_size") != world:
            log.warning("%s: checkpoint %s was written by %s processes, resuming with %s: the data order of "
                        "later steps differs from an uninterrupted run", name, ck, st.get("world_size"), world)
        st = load_checkpoint(accelerator, ck, model, optimizer, scheduler)
        step, tokens, elapsed_before = st["step"], st["tokens"], st["elapsed_s"]
        resumes = st.get("resumes", []) + [step]
        resumed_from = step
        log.info("%s: resuming from %s (step %d of %d)", name, ck, step, total)
        break

    loss_module, optimizer = accelerator.prepare(loss_module, optimizer)
    if cfg["compile"]:
        loss_module = torch.compile(loss_module)

    metrics_path = out / "train_metrics.jsonl"
    if main:
        out.mkdir(parents=True, exist_ok=True)
        kept = ""
        if resumed_from and metrics_path.exists():
            import json
            lines = [ln for ln in metrics_path.read_text(encoding="utf-8").splitlines(keepends=True)
                     if ln.endswith("\n") and ln.strip()]
            kept = "".join(ln for ln in lines if json.loads(ln)["step"] <= resumed_from)
        atomic_write_text(metrics_path, kept)
        if state_path.exists():
            state_path.unlink()

    def ck_state() -> dict:
        return {"step": step, "total_steps": total, "tokens": tokens, "elapsed_s": elapsed_before + time.perf_counter() - t0,
                "epoch": step / steps_per_epoch, "fingerprint": fp, "world_size": world, "resumes": resumes,
                "data_position": {"epoch": step // steps_per_epoch, "step_in_epoch": step % steps_per_epoch,
                                  "global_batch": global_batch}}

    tracker = Tracker()
    if main and tracking:
        tracker = open_tracker(tracking, name=name, group=run_group, config={
            "method": method, "name": name, "train_cfg": cfg, "data": data, "base": source.get("base"),
            "init": (init_spec or {}).get("name"), "merge_init": merge_init, "fingerprint": fp,
            "world_size": world, "global_batch_rows": global_batch, "total_steps": total,
            "resumed_from": resumed_from, "data_stats": stats})

    stop = {"signal": None}
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        def _handler(signum, frame):
            stop["signal"] = signum
            print(f"doctune.training: received signal {signum}; saving a checkpoint after this step",
                  file=sys.stderr, flush=True)
        for sname in STOP_SIGNALS:
            sig = getattr(signal, sname, None)
            if sig is not None:
                previous[sig] = signal.signal(sig, _handler)

    pad_id = tok.pad_token_id
    pad_to = cfg["seq_len"] if cfg["compile"] else None
    t0 = time.perf_counter()
    last_saved = resumed_from
    last_loss = None
    try:
        pbar = tqdm(total=total, initial=step, desc=f"train {name}", disable=not main, file=sys.stderr)
        window_t, window_tokens = time.perf_counter(), 0
        fh = metrics_path.open("a", encoding="utf-8") if main else None
        while step < total:
            idx = step_rows(len(rows), step, global_batch, cfg["seed"], cfg["shuffle"])
            micro = make_micro_batches(rows, idx, rank, world, cfg["batch_size"], cfg["grad_accum"], pad_id, pad_to)
            lr = scheduler.get_last_lr()[0]
            res = train_step(accelerator, loss_module, optimizer, scheduler, micro, cfg["max_grad_norm"], params)
            step += 1
            tokens += res["tokens"]
            window_tokens += res["tokens"]
            last_loss = res["loss"]
            pbar.update(1)
            if step % cfg["log_every"] == 0 or step == total:
                now = time.perf_counter()
                dt = max(now - window_t, 1e-9)
                tps = window_tokens / dt
                row = {"step": step, "epoch": round(step / steps_per_epoch, 4), "loss": res["loss"],
                       "learning_rate": lr, "grad_norm": res["grad_norm"], "tokens": tokens,
                       "tokens_per_s": tps, "mfu": (tps * fpt / (peak * 1e12 * world)) if peak else None,
                       "elapsed_s": elapsed_before + now - t0}
                if fh:
                    import json
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
                tracker.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=step)
                pbar.set_postfix(loss=f"{res['loss']:.4f}" if res["loss"] is not None else "n/a")
                window_t, window_tokens = time.perf_counter(), 0
            if world > 1:
                # every rank must stop after the same step: a signal may reach them a step apart
                flag = torch.tensor([0.0 if stop["signal"] is None else 1.0], device=accelerator.device)
                if float(accelerator.reduce(flag, reduction="sum")) > 0 and stop["signal"] is None:
                    stop["signal"] = "another rank's"
            if stop["signal"] is not None:
                if fh:
                    fh.close()
                    fh = None
                save_checkpoint(accelerator, out, accelerator.unwrap_model(loss_module).model, optimizer,
                                scheduler, ck_state(), cfg["save_total_limit"])
                raise Preempted(step)
            if step < total and cfg["save_every"] and step % cfg["save_every"] == 0:
                save_checkpoint(accelerator, out, accelerator.unwrap_model(loss_module).model, optimizer,
                                scheduler, ck_state(), cfg["save_total_limit"])
                last_saved = step
        if fh:
            fh.close()
        pbar.close()
        if last_saved != step:
            save_checkpoint(accelerator, out, accelerator.unwrap_model(loss_module).model, optimizer, scheduler,
                            ck_state(), cfg["save_total_limit"])
    except BaseException as exc:
        tracker.finish(exit_code=EXIT_PREEMPTED if isinstance(exc, Preempted) else 1)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    # ---- final outputs (trainer_state.json last: it marks the run finished) ----
    elapsed = elapsed_before + time.perf_counter() - t0
    final_model = accelerator.unwrap_model(loss_module).model
    accelerator.wait_for_everyone()
    if last_loss is None and metrics_path.exists():
        from ..io import read_jsonl
        rows_m = read_jsonl(metrics_path)
        last_loss = rows_m[-1]["loss"] if rows_m else None
    src_base = dict(source["base"])
    if cfg["full_finetune"]:
        spec = {"name": name, "base": {**src_base, "path": str(out), "tokenizer": src_base.get("tokenizer") or src_base["path"]},
                "adapters": []}
    else:
        spec = {"name": name, "base": src_base,
                "adapters": [{"path": a["path"], "merge": True} for a in merged] + [{"path": str(out), "merge": False}]}
    result = {"name": name, "out_dir": str(out), "method": method, "spec": spec, "global_step": step,
              "total_steps": total, "final_loss": last_loss, "tokens": tokens, "train_runtime_s": elapsed,
              "resumed_from": resumed_from, "skipped": False, "data_stats": stats,
              "continued_adapter": cont["path"] if cont else None}
    if main:
        if cfg["full_finetune"]:
            final_model.save_pretrained(out, safe_serialization=True)
        else:
            final_model.save_pretrained(str(out), safe_serialization=True)
        atomic_write_json(out / "model.json", spec)
        if not cfg["keep_checkpoints"]:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
        atomic_write_json(state_path, {
            "finished": True, "fingerprint": fp, "name": name, "method": method, "global_step": step,
            "total_steps": total, "steps_per_epoch": steps_per_epoch, "epochs": step / steps_per_epoch,
            "global_batch_rows": global_batch, "world_size": world, "resumes": resumes, "data": data,
            "data_stats": stats, "train_cfg": cfg, "flops_per_token": fpt, "peak_tflops": peak,
            "mixed_precision": "bf16" if use_bf16 else "no", "device": str(accelerator.device),
            "init_spec": init_spec, "merge_init": merge_init, "result": result})
    tracker.summary({k: result[k] for k in ("final_loss", "tokens", "global_step", "total_steps", "train_runtime_s",
                                            "resumed_from")})
    tracker.finish()
    accelerator.wait_for_everyone()
    return result
