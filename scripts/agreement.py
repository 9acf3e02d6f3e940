"""rule agreement: people vs judges (when ratings are supplied) and judge vs judge."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.agreement import compute_agreement
from doctune.workflow.pipeline import run

run(snakemake, lambda: compute_agreement(
    snakemake.input.key, list(snakemake.input.ratings) or None, snakemake.output[0],
    n_bootstrap=int(snakemake.params.n_bootstrap), seed=int(snakemake.params.seed),
    scores={m: dict(b) for m, b in snakemake.params.scores.items()}))
