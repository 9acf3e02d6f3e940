"""rule posttrain_data: n standard fine-tuning samples."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.data.posttrain import write_posttrain
from doctune.workflow.pipeline import run

run(snakemake, lambda: write_posttrain(dict(snakemake.params.source), int(snakemake.wildcards.n),
                                       int(snakemake.params.seed), snakemake.output[0]))
