"""rule judge: judge the completions of a model on a judged benchmark."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.judging import judge_completions
from doctune.pipeline import run

run(snakemake, lambda: judge_completions(
    completions=snakemake.input.completions, benchmark=snakemake.wildcards.judged,
    bench_cfg=dict(snakemake.params.bench), judges={k: dict(v) for k, v in snakemake.params.judges.items()},
    out=snakemake.output[0], cache=snakemake.params.cache, report=snakemake.output.report,
))
