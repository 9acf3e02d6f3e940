"""rule plots: robustness curve, AHB dimension profile, loss curves."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune import plots
from doctune.pipeline import run
from doctune.training import plot_loss_curves


def main():
    p = snakemake.params
    files = {m: dict(b) for m, b in p.metrics_files.items()}
    ahb = [b for b, k in p.benchmarks.items() if k == "ahb"] or [b for b, k in p.benchmarks.items() if k == "compassion"]
    bench = ahb[0] if ahb else next(iter(p.benchmarks))
    plots.robustness_curve(files, list(p.posttrain_arms), list(p.posttrain_sizes), bench, None,
                           snakemake.output.robustness, demo=bool(p.demo))
    plots.dimension_profile(files, list(p.models), bench, snakemake.output.profile, demo=bool(p.demo))
    # a model that could not be trained (its data unavailable) has no train_metrics.jsonl
    loss = {m: f"results/models/{m}/train_metrics.jsonl" for m in p.trained}
    plot_loss_curves({m: f for m, f in loss.items() if Path(f).is_file()}, snakemake.output.loss)


run(snakemake, main)
