"""rule metrics: aggregate a model's scores on each of its benchmarks (one job per model)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune.evaluation.metrics import compute_metrics
from doctune.workflow.pipeline import run_each

sm = snakemake
p = sm.params
model = sm.wildcards.model


def unit(bench, scores, out):
    cfg = dict(p.benches[bench])
    return {"name": bench, "outputs": [out], "inputs": [scores, *p.data[bench]],
            "config": {"bench": cfg, "n_bootstrap": p.n_bootstrap, "seed": p.seed, "epochs": p.epochs[bench]},
            "body": lambda: compute_metrics(model, bench, cfg, scores, out, n_bootstrap=int(p.n_bootstrap),
                                            seed=int(p.seed), gate=p.gates.get(bench), epochs=int(p.epochs[bench]))}


assert [Path(o).name.rsplit(".", 1)[0] for o in sm.output] == list(p.benches), "outputs and benchmarks out of step"
run_each(sm, [unit(b, s, o) for b, s, o in zip(p.benches, sm.input.scores, sm.output)])
