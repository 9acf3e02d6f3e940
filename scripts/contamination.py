"""rule contamination: one source against every benchmark's items (doctune.data.contamination)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.data.contamination import run_check
from doctune.workflow.pipeline import run

p = snakemake.params
run(snakemake, lambda: run_check(snakemake.wildcards.source, snakemake.input.source, p.kind,
                                 {b: dict(v) for b, v in p.benchmarks.items()}, dict(p.check),
                                 snakemake.output[0], skip=list(p.skip)))
