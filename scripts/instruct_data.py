"""rule instruct_data: question-answer pairs for the instruction-tuning control."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.data.instruct import generate_instruct_data
from doctune.workflow.pipeline import run

run(snakemake, lambda: generate_instruct_data(
    out=snakemake.output.data, report=snakemake.output.report,
    generator_cfg=dict(snakemake.params.generator), instruct_cfg=dict(snakemake.params.instruct),
    resources_dir=snakemake.params.resources_dir, cache=snakemake.params.cache,
    corpus_documents=list(snakemake.input.corpus_docs) or None,
))
