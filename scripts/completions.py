"""rule completions: sample completions of a model on a judged benchmark."""
from doctune.evaluation.completions import generate_completions
from doctune.pipeline import load_spec, run

run(snakemake, lambda: generate_completions(
    spec=load_spec(snakemake.input.spec), benchmark=snakemake.wildcards.judged,
    bench_cfg=dict(snakemake.params.bench), gen_cfg=dict(snakemake.params.generation),
    out=snakemake.output[0], cache=snakemake.params.cache,
))
