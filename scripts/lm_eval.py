"""rule lm_eval: benchmarks of stage "lm_eval" (an lm-eval task through its Python API)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.kinds import get_kind
from doctune.pipeline import load_spec, run

bench = dict(snakemake.params.bench)
run(snakemake, lambda: get_kind(bench["kind"]).run(load_spec(snakemake.input.spec), bench, snakemake.output[0],
                                                    cache_dir=snakemake.params.cache_dir))
