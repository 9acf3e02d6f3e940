"""rule specs: plan a corpus's documents over the template grid."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.documents import write_specs
from doctune.workflow.pipeline import run

run(snakemake, lambda: write_specs(snakemake.wildcards.corpus, dict(snakemake.params.corpus),
                                   snakemake.params.resources_dir, snakemake.output[0]))
