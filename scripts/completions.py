"""rule completions: sample completions of a model on a judged benchmark."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.completions import generate_completions
from doctune.pipeline import load_spec, run

run(snakemake, lambda: generate_completions(
    spec=load_spec(snakemake.input.spec), benchmark=snakemake.wildcards.judged,
    bench_cfg=dict(snakemake.params.bench), gen_cfg=dict(snakemake.params.generation),
    out=snakemake.output[0], cache=snakemake.params.cache,
))
