"""rule summary: the long-format results table (the manipulation check first, the judge gates)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.summary import write_summary
from doctune.workflow.pipeline import run

i = snakemake.input
run(snakemake, lambda: write_summary({m: dict(b) for m, b in snakemake.params.metrics_files.items()},
                                     snakemake.output[0], demo=bool(snakemake.params.demo),
                                     agreement=i.agreement[0] if i.agreement else None,
                                     manipulation=i.manipulation[0] if i.manipulation else None,
                                     dose=i.dose[0] if i.dose else None,
                                     contamination=(dict(snakemake.params.contamination),
                                                    dict(snakemake.params.filtered)),
                                     gates=dict(snakemake.params.gates)))
