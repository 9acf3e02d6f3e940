"""rule score_logprob: benchmarks of stage "logprob" (answer log-probabilities: advanced-ai-risk, probes)
for one model; the model is loaded once and shared by the benchmarks with the same settings."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune.evaluation.kinds import get_kind
from doctune.workflow.pipeline import load_spec, run_each

sm = snakemake
p = sm.params
spec = load_spec(sm.input.spec)
backends = {}


def unit(bench, out):
    cfg = dict(p.benches[bench])
    return {"name": bench, "outputs": [out], "inputs": [sm.input.spec, *p.data[bench]], "config": {"bench": cfg},
            "body": lambda: get_kind(cfg["kind"]).run(spec, cfg, out, backends=backends)}


assert [Path(o).name.rsplit(".", 1)[0] for o in sm.output] == list(p.benches), "outputs and benchmarks out of step"
run_each(sm, [unit(b, o) for b, o in zip(p.benches, sm.output)])
