"""rule documents: generate, validate and store one corpus."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
import yaml

from doctune.documents import generate_documents
from doctune.workflow.pipeline import run


def main():
    with open(snakemake.input.corpus, encoding="utf-8") as fh:
        corpus_def = yaml.safe_load(fh)
    generate_documents(
        specs=snakemake.input.specs, out=snakemake.output.docs, report=snakemake.output.report,
        generator_cfg=dict(snakemake.params.generator), validation_cfg=dict(snakemake.params.validation),
        corpus_def=corpus_def, cache=snakemake.params.cache,
    )


run(snakemake, main)
