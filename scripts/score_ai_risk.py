"""rule score_ai_risk: answer log-probabilities on advanced-ai-risk items."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.airisk import score_ai_risk
from doctune.pipeline import load_spec, run

run(snakemake, lambda: score_ai_risk(load_spec(snakemake.input.spec), dict(snakemake.params.bench),
                                     snakemake.output[0]))
