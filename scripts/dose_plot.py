"""rule dose_plot: one sweep's dose-response figure (doctune.analysis.dose_response)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.dose_response import dose_response_figure, read_dose_response
from doctune.workflow.pipeline import run

p = snakemake.params
run(snakemake, lambda: dose_response_figure(read_dose_response(snakemake.input[0]), snakemake.wildcards.sweep,
                                            snakemake.output[0], alpha=float(p.alpha), demo=bool(p.demo),
                                            kinds=dict(p.kinds)))
