"""rule summary: the long-format results table."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.summary import write_summary
from doctune.pipeline import run

run(snakemake, lambda: write_summary({m: dict(b) for m, b in snakemake.params.metrics_files.items()},
                                     snakemake.output[0], demo=bool(snakemake.params.demo),
                                     agreement=snakemake.input.agreement[0] if snakemake.input.agreement else None))
