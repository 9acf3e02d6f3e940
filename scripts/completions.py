"""rule completions: sample completions of one model on every judged benchmark (the model is
loaded once, on first need, and shared by the benchmarks)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune.evaluation.completions import generate_completions
from doctune.workflow.pipeline import load_spec, run_each

sm = snakemake
p = sm.params
spec = load_spec(sm.input.spec)
backends = {}  # loaded generation backends, by their settings


def unit(bench, out):
    return {"name": bench, "outputs": [out], "inputs": [sm.input.spec, *p.data[bench]],
            "config": {"bench": p.benches[bench], "generation": p.generation[bench]},
            "body": lambda: generate_completions(spec=spec, benchmark=bench, bench_cfg=dict(p.benches[bench]),
                                                 gen_cfg=dict(p.generation[bench]), out=out,
                                                 cache=p.cache[bench], backends=backends)}


assert [Path(o).name.rsplit(".", 1)[0] for o in sm.output] == list(p.benches), "outputs and benchmarks out of step"
run_each(sm, [unit(b, o) for b, o in zip(p.benches, sm.output)])
