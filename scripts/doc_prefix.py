"""rule doc_prefix: the first n documents of a corpus (doctune.documents.prefix)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.documents.prefix import write_prefix
from doctune.workflow.pipeline import run

run(snakemake, lambda: write_prefix(snakemake.input[0], int(snakemake.wildcards.n), snakemake.output[0],
                                    snakemake.params.key))
