"""rule inspect_task: an Inspect task (inspect_evals/anima, moru, tac, ...) on one of our models."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.evaluation.kinds import get_kind
from doctune.workflow.pipeline import load_spec, run

bench = dict(snakemake.params.bench, _name=snakemake.wildcards.inspect)
run(snakemake, lambda: get_kind(bench["kind"]).run(
    load_spec(snakemake.input.spec), bench, snakemake.output.summary, log_file=snakemake.output.log,
    model_name=snakemake.wildcards.model, gen=dict(snakemake.params.generation),
))
