"""Training: document-tuning (causal-LM loss on packed documents), instruction-tuning (loss on
assistant tokens only) and post-training (an arm's weights, then standard fine-tuning), as LoRA
adapters (peft) or full fine-tuning, on one CPU or many GPUs (`accelerate launch`).

`train(method, data, base_spec, train_cfg, out_dir, init_spec=None, merge_init=True, name=None)`
writes into out_dir: the peft adapter (adapter_config.json, adapter_model.safetensors; the full
weights for full_finetune), model.json (the resulting model spec, so
doctune.models.load_model(out_dir) rebuilds it), train_metrics.jsonl (one row per logging step:
step, epoch, loss, learning_rate, grad_norm, tokens, tokens_per_s, mfu, elapsed_s),
trainer_state.json (written last; marks the run finished) and, while running, checkpoints/.
The train_cfg keys are described and defaulted in config/schema.yaml (training); doctune.training.config checks them.
"""
from .config import ConfigError, resolve_train_cfg
from .loop import train
from .plots import plot_loss_curves

__all__ = ["train", "plot_loss_curves", "resolve_train_cfg", "ConfigError"]
