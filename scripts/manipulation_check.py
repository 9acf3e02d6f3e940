"""rule manipulation_check: document arms against their controls on probe margins (doctune.analysis.manipulation)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.manipulation import run_manipulation_check
from doctune.workflow.pipeline import run

p = snakemake.params
run(snakemake, lambda: run_manipulation_check(
    [dict(x) for x in p.pairs], {m: dict(b) for m, b in p.metrics_files.items()},
    {a: list(fs) for a, fs in p.states.items()}, dict(p.stats), dict(p.check), snakemake.output[0],
    demo=bool(p.demo), overlap={k: tuple(v) for k, v in p.overlap.items()}))
