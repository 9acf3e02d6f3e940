"""rule score_ai_risk: benchmarks of stage "logprob" (answer log-probabilities, e.g. advanced-ai-risk)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.kinds import get_kind
from doctune.pipeline import load_spec, run

bench = dict(snakemake.params.bench)
run(snakemake, lambda: get_kind(bench["kind"]).run(load_spec(snakemake.input.spec), bench, snakemake.output[0]))
