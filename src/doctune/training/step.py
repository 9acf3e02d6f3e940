"""The training step and the pieces around it, shared by `train()` and
benchmarks/train_throughput.py: the loss module (plain or chunked cross-entropy), LoRA set-up,
optimizer, scheduler, one optimizer step over micro-batches, and FLOP/MFU accounting.

Only torch, transformers, peft and accelerate are imported here."""
from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .data import IGNORE

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------
# loss
# ------------------------------------------------------------------------------------------------

def _ce_sum(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = lm_head(hidden).float()
    return F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")


class _FrozenHeadCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropies of (hidden @ weight.T + bias) for a FROZEN output layer, chunk by chunk,
    with the gradient with respect to `hidden` computed in the same pass: per chunk one matmul
    for the logits and one for (softmax - one-hot) @ weight. The backward pass only scales that
    stored gradient, so the logits are never recomputed (the checkpointed form pays a third
    matmul over the vocabulary for it)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size):
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for s in range(0, hidden.shape[0], chunk_size):
            hc, tc = hidden[s:s + chunk_size], targets[s:s + chunk_size]
            logits = F.linear(hc, weight, bias).float()
            valid = tc != IGNORE
            safe = torch.where(valid, tc, torch.zeros_like(tc))
            lse = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(-1, safe[:, None]).squeeze(-1)
            total += torch.where(valid, lse - picked, torch.zeros_like(lse)).sum()
            if grad_h is not None:
                g = torch.exp(logits - lse[:, None])                           # softmax
                g.scatter_add_(-1, safe[:, None], -torch.ones_like(lse)[:, None])  # minus one-hot
                g.mul_(valid[:, None])
                grad_h[s:s + chunk_size] = (g.to(weight.dtype) @ weight).to(hidden.dtype)
        ctx.save_for_backward(grad_h if grad_h is not None else torch.empty(0))
        return total

    @staticmethod
    def backward(ctx, grad_out):
        (grad_h,) = ctx.saved_tensors
        return (grad_h * grad_out.to(grad_h.dtype) if ctx.needs_input_grad[0] else None), None, None, None, None


def chunked_cross_entropy(hidden: torch.Tensor, lm_head: nn.Module, targets: torch.Tensor,
                          chunk_size: int) -> torch.Tensor:
    """Sum of token cross-entropies of lm_head(hidden) against targets (-100 ignored), computed in
    chunks of `chunk_size` tokens, so at most one chunk of logits (chunk_size x vocab) exists at a
    time. A frozen nn.Linear head (LoRA that does not target it) takes the fused path of
    `_FrozenHeadCrossEntropy` (gradient in the forward pass, no recomputation); a trainable head
    (full fine-tuning, LoRA on lm_head) has each chunk under activation checkpointing."""
    h = hidden.reshape(-1, hidden.shape[-1])
    t = targets.reshape(-1)
    if type(lm_head) is nn.Linear and not any(p.requires_grad for p in lm_head.parameters()):
        return _FrozenHeadCrossEntropy.apply(h, lm_head.weight, lm_head.bias, t, chunk_size)
    total = h.new_zeros((), dtype=torch.float32)
    for s in range(0, h.shape[0], chunk_size):
        hc, tc = h[s:s + chunk_size], t[s:s + chunk_size]
        if torch.is_grad_enabled() and hc.requires_grad:
            total = total + checkpoint(_ce_sum, lm_head, hc, tc, use_reentrant=False)
        else:
            total = total + _ce_sum(lm_head, hc, tc)
    return total


def plain_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


def causal_lm(model: nn.Module) -> nn.Module:
    """The transformers *ForCausalLM inside a (peft) model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class LossModule(nn.Module):
    """Wraps a causal LM; forward returns the SUM of next-token cross-entropies over labelled
    targets (labels shifted inside). Wrapped as a whole by accelerate (DDP) and torch.compile."""

    def __init__(self, model: nn.Module, chunked: bool = False, chunk_size: int = 1024,
                 flatten: bool = False):
        super().__init__()
        self.model = model
        self.chunked = chunked
        self.chunk_size = chunk_size
        self.flatten = flatten  # flash attention: one row, sequences separated by position ids
        lm = causal_lm(model)
        if chunked and getattr(lm.config, "final_logit_softcapping", None):
            raise ValueError("loss_chunking does not support models with final_logit_softcapping")

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            input_ids, position_ids, labels = (x.reshape(1, -1) for x in (input_ids, position_ids, labels))
        targets = labels[:, 1:]
        if self.chunked:
            lm = causal_lm(self.model)
            decoder = getattr(lm, lm.base_model_prefix)
            hidden = decoder(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
            return chunked_cross_entropy(hidden[:, :-1], lm.get_output_embeddings(), targets, self.chunk_size)
        logits = self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False).logits
        return plain_cross_entropy(logits[:, :-1], targets)


# ------------------------------------------------------------------------------------------------
# model set-up
# ------------------------------------------------------------------------------------------------

def apply_lora(model: nn.Module, lora_cfg: dict):
    from peft import LoraConfig, get_peft_model

    conf = LoraConfig(r=lora_cfg["r"], lora_alpha=lora_cfg["alpha"], lora_dropout=float(lora_cfg["dropout"]),
                      target_modules=lora_cfg["target_modules"], bias=lora_cfg["bias"], task_type="CAUSAL_LM")
    return get_peft_model(model, conf)


def enable_gradient_checkpointing(model: nn.Module) -> None:
    lm = causal_lm(model)
    lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lm.config.use_cache = False


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    params = [p for _, p in trainable_parameters(model)]
    if not params:
        raise ValueError("the model has no trainable parameters")
    kwargs: dict[str, Any] = dict(lr=float(cfg["learning_rate"]), betas=(cfg["adam_beta1"], cfg["adam_beta2"]),
                                  eps=cfg["adam_epsilon"], weight_decay=cfg["weight_decay"])
    if cfg.get("fused_adamw") and params[0].is_cuda:
        kwargs["fused"] = True
    return torch.optim.AdamW(params, **kwargs)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: dict, total_steps: int):
    from transformers import get_scheduler

    warmup = int(round(cfg["warmup_ratio"] * total_steps))
    return get_scheduler(cfg["lr_scheduler"], optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


# ------------------------------------------------------------------------------------------------
# one optimizer step
# ------------------------------------------------------------------------------------------------

def train_step(accelerator, loss_module: nn.Module, optimizer, scheduler, micro_batches: list[dict],
               max_grad_norm: float | None, params: list[nn.Parameter] | None = None) -> dict:
    """Forward/backward over this process's micro-batches, then one optimizer + scheduler step.

    The loss is normalised by the number of labelled targets in the whole step across all
    processes, so gradient accumulation and data parallelism give the same update as one big
    batch. Each micro-batch dict holds input_ids, position_ids, labels (CPU tensors), n_targets,
    n_tokens and weight (0 for a placeholder batch on a process with no rows left).
    Returns {"loss": mean loss per target over the step, "tokens": real tokens, "grad_norm"}."""
    device = accelerator.device
    local = torch.tensor([sum(b["n_targets"] * b["weight"] for b in micro_batches),
                          sum(b["n_tokens"] * b["weight"] for b in micro_batches)], dtype=torch.float64,
                         device=device)
    glob = accelerator.reduce(local, reduction="sum") if accelerator.num_processes > 1 else local
    n_targets, n_tokens = float(glob[0]), float(glob[1])
    scale = accelerator.num_processes / max(n_targets, 1.0)
    loss_total = torch.zeros((), dtype=torch.float32, device=device)
    for i, b in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        ctx = contextlib.nullcontext() if last or accelerator.num_processes == 1 else accelerator.no_sync(loss_module)
        with ctx:
            loss_sum = loss_module(b["input_ids"].to(device, non_blocking=True),
                                   b["position_ids"].to(device, non_blocking=True),
                                   b["labels"].to(device, non_blocking=True))
            accelerator.backward(loss_sum * (scale * b["weight"]))
        loss_total += loss_sum.detach() * b["weight"]
    grad_norm = None
    if max_grad_norm:
        if params is None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
        grad_norm = accelerator.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if accelerator.num_processes > 1:
        loss_total = accelerator.reduce(loss_total, reduction="sum")
    loss = float(loss_total) / n_targets if n_targets else None
    return {"loss": loss, "tokens": int(n_tokens), "n_targets": int(n_targets),
            "grad_norm": float(grad_norm) if grad_norm is not None else None}


# ------------------------------------------------------------------------------------------------
# FLOPs and MFU
# ------------------------------------------------------------------------------------------------

# dense bf16 peak TFLOP/s per device (vendor data sheets), matched against torch.cuda.get_device_name
KNOWN_PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200", 989.4),
                     ("GH200", 989.4), ("A100", 312.0)]


def peak_tflops(configured: float | None = None) -> float | None:
    if configured:
        return float(configured)
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    for key, value in KNOWN_PEAK_TFLOPS:
        if key in name:
            return value
    return None


def flops_per_token(model: nn.Module, seq_len: int, lora: bool) -> float:
    """Model FLOPs per trained token: matmul weights N (all nn.Linear of the base model, lm_head
    included, LoRA factors excluded): 6N for full fine-tuning, 4N for LoRA (no weight gradients
    for frozen weights); plus causal attention 3 x 2 x layers x seq_len x hidden. Recomputation
    by gradient checkpointing is not counted (MFU, not hardware utilisation)."""
    n = 0
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear) and "lora_" not in name:
            n += m.weight.numel()
    cfg = causal_lm(model).config
    layers = getattr(cfg, "num_hidden_layers", 0)
    hidden = getattr(cfg, "hidden_size", 0)
    attn = 3 * 2 * layers * seq_len * hidden
    return (4 if lora else 6) * n + attn
