"""rule lm_eval: an lm-eval task through its Python API."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.lmeval import run_lm_eval
from doctune.pipeline import load_spec, run

run(snakemake, lambda: run_lm_eval(load_spec(snakemake.input.spec), dict(snakemake.params.bench),
                                   snakemake.output[0], snakemake.params.cache_dir))
