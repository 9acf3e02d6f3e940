"""rule manipulation_plot: the manipulation check as a figure."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.manipulation import read_manipulation
from doctune.workflow.pipeline import run
from doctune.analysis.plots import manipulation_figure

p = snakemake.params
run(snakemake, lambda: manipulation_figure(read_manipulation(snakemake.input[0]), snakemake.output[0],
                                           alpha=float(p.alpha), demo=bool(p.demo),
                                           kinds=dict(p.kinds)))
