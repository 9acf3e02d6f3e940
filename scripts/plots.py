"""rule plots: robustness curves, dimension profiles, model x benchmark overview, loss curves."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune.analysis import plots
from doctune.evaluation.kinds import get_kind
from doctune.workflow.pipeline import run
from doctune.training import plot_loss_curves


def main():
    p = snakemake.params
    files = {m: dict(b) for m, b in p.metrics_files.items()}
    kinds = dict(p.benchmarks)
    demo = bool(p.demo)
    judged = {b: k for b, k in kinds.items() if get_kind(k).stage == "judge"}
    plots.robustness_curves(files, list(p.posttrain_arms), list(p.posttrain_sizes), judged,
                            snakemake.output.robustness, references=dict(p.base_of),
                            comparisons=plots.read_comparisons(snakemake.input.comparisons),
                            alpha=p.alpha, demo=demo)
    plots.dimension_profiles(files, list(p.models), {b: k for b, k in kinds.items() if get_kind(k).per_dimension},
                             snakemake.output.profile, demo=demo)
    plots.overview(files, list(p.models), kinds, snakemake.output.overview, demo=demo)
    # a model that could not be trained (its data unavailable) has no train_metrics.jsonl
    loss = {m: f"results/models/{m}/train_metrics.jsonl" for m in p.trained}
    plot_loss_curves({m: f for m, f in loss.items() if Path(f).is_file()}, snakemake.output.loss,
                     methods=dict(p.methods))


run(snakemake, main)
