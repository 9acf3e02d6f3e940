"""Loss curves from train_metrics.jsonl files, for the report: one panel per training method,
because the methods' losses are computed on different tokens and do not share a scale."""
from __future__ import annotations

from pathlib import Path

from ..io import read_jsonl

# method -> (panel title, y-axis label)
METHOD_PANELS = {
    "doc": ("document tuning", "document LM loss\n(cross-entropy, all document tokens)"),
    "sft": ("instruction tuning (SFT)", "SFT loss\n(cross-entropy, assistant tokens only)"),
    "post": ("post-training (SFT on standard data)", "SFT loss\n(cross-entropy, assistant tokens only)"),
}


def plot_loss_curves(metrics_files: dict[str, str], out_png: str, title: str | None = None,
                     methods: dict[str, str] | None = None) -> dict:
    """Training loss against optimizer step, one line per model (name -> train_metrics.jsonl).
    ``methods`` (name -> doc, sft or post) puts each method in its own panel with its own y axis
    (without it: one panel). Steps are integers on the x axis.
    Returns {panel method: {model: {"step": [...], "loss": [...]}}}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    methods = methods or {}
    groups: dict[str, dict[str, str]] = {}
    for name, path in metrics_files.items():
        groups.setdefault(methods.get(name, "all"), {})[name] = path
    order = [m for m in METHOD_PANELS if m in groups] + [m for m in groups if m not in METHOD_PANELS]
    if not order:
        order = ["all"]
    fig, axes = plt.subplots(1, len(order), figsize=(5.2 * len(order), 4.0), squeeze=False)
    data: dict[str, dict[str, dict[str, list]]] = {}
    for ax, method in zip(axes[0], order):
        panel_title, ylabel = METHOD_PANELS.get(method, ("training loss", "training loss (mean token cross-entropy)"))
        data[method] = {}
        for name, path in (groups.get(method) or {}).items():
            rows = [r for r in read_jsonl(path) if r.get("loss") is not None] if Path(path).exists() else []
            steps, losses = [int(r["step"]) for r in rows], [float(r["loss"]) for r in rows]
            data[method][name] = {"step": steps, "loss": losses}
            ax.plot(steps, losses, label=name, marker="." if len(rows) < 30 else None)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        steps_here = [s for d in data[method].values() for s in d["step"]]
        if steps_here and max(steps_here) - min(steps_here) < 2:   # one or two steps: whole-number ticks
            ax.set_xlim(min(steps_here) - 1, max(steps_here) + 1)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        if data[method]:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no trained model", ha="center", va="center", transform=ax.transAxes)
    fig.suptitle(title or ("Training loss per method (each panel has its own loss and scale)"
                           if len(order) > 1 else "Training loss"), fontsize=11)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out_png).with_name(f".{Path(out_png).name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(out_png)
    return data
