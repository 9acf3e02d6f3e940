"""rule inspect_export: our completions and verdicts as an Inspect .eval log."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.inspect_log import export_eval_log
from doctune.workflow.pipeline import run

run(snakemake, lambda: export_eval_log(
    model=snakemake.wildcards.model, benchmark=snakemake.wildcards.judged, bench_cfg=dict(snakemake.params.bench),
    completions=snakemake.input.completions, scores=snakemake.input.scores, out=snakemake.output[0],
    metrics=snakemake.input.metrics,
))
