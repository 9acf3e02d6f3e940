"""rules decontaminate_*: drop the texts the contamination guard flagged (doctune.data.contamination)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.data.contamination import filter_texts
from doctune.workflow.pipeline import run

run(snakemake, lambda: filter_texts(snakemake.input.docs, snakemake.input.table, snakemake.output.docs,
                                    snakemake.output.dropped))
