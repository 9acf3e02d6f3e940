"""rule rating_sample: export judged items for people to rate (model names hidden)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.agreement import criteria_from_benchmarks, export_rating_sample
from doctune.workflow.pipeline import run

p = snakemake.params
run(snakemake, lambda: export_rating_sample(
    {m: dict(b) for m, b in p.scores.items()}, {m: dict(b) for m, b in p.completions.items()},
    int(p.per_stratum), int(p.seed), snakemake.output.csv, snakemake.output.html, snakemake.output.key,
    criteria=criteria_from_benchmarks({b: dict(c) for b, c in p.benchmarks.items()})))
