"""rule aggregate_seeds: seed-averaged metrics of an arm trained with several seeds."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.workflow.pipeline import run
from doctune.analysis.seeds import aggregate_seed_metrics

run(snakemake, lambda: aggregate_seed_metrics(
    snakemake.wildcards.agg, snakemake.wildcards.benchmark,
    dict(zip(snakemake.params.seed_models, map(str, snakemake.input))), snakemake.output[0],
    n_bootstrap=int(snakemake.params.n_bootstrap), seed=int(snakemake.params.seed)))
