"""rule metrics: aggregate a model's scores on a benchmark."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.metrics import compute_metrics
from doctune.pipeline import run

run(snakemake, lambda: compute_metrics(
    snakemake.wildcards.model, snakemake.wildcards.benchmark, dict(snakemake.params.bench),
    snakemake.input.scores, snakemake.output[0], n_bootstrap=int(snakemake.params.n_bootstrap),
    seed=int(snakemake.params.seed),
))
