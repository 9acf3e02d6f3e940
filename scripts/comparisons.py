"""rule comparisons: significance tests between models."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.stats import run_comparisons
from doctune.workflow.pipeline import run


def main():
    stats = dict(snakemake.params.stats)
    stats["posttrain_sizes"] = list(snakemake.params.posttrain_sizes)
    stats["demo"] = bool(snakemake.params.demo)
    files = {m: dict(b) for m, b in snakemake.params.metrics_files.items()}
    run_comparisons(list(stats["comparisons"]), files, stats, snakemake.output[0])


run(snakemake, main)
