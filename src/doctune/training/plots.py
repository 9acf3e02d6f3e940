"""Loss curves from train_metrics.jsonl files, for the report."""
from __future__ import annotations

from pathlib import Path

from ..io import read_jsonl


def plot_loss_curves(metrics_files: dict[str, str], out_png: str, title: str | None = None) -> str:
    """One line per model (name -> train_metrics.jsonl): training loss against optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, path in metrics_files.items():
        rows = [r for r in read_jsonl(path) if r.get("loss") is not None]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=name, marker="." if len(rows) < 30 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (mean token cross-entropy)")
    ax.set_title(title or "Training loss")
    ax.grid(alpha=0.3)
    if metrics_files:
        ax.legend(fontsize=8)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out_png).with_name(f".{Path(out_png).name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out_png)
    return str(out_png)
