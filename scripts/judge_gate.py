"""rule judge_gate: every judge of every judged benchmark on its labelled answers (each judge model
is loaded once and shared by the benchmarks)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune.evaluation.judge_gate import gate_benchmark
from doctune.evaluation.judging import shared_judge_backends
from doctune.workflow.pipeline import run_each

sm = snakemake
p = sm.params
backends = shared_judge_backends()  # judge name -> backend, made on first use


def unit(bench, out):
    judges = {k: dict(v) for k, v in p.judges[bench].items()}
    return {"name": bench, "outputs": [out], "inputs": list(p.data[bench]),
            "config": {"bench": p.benches[bench], "judges": p.judges[bench], "gate": p.gate},
            "body": lambda: gate_benchmark(bench, dict(p.benches[bench]), judges, dict(p.gate), out,
                                           cache=p.cache[bench], backends=backends)}


assert [Path(o).name.rsplit(".", 1)[0] for o in sm.output] == list(p.benches), "outputs and benchmarks out of step"
run_each(sm, [unit(b, o) for b, o in zip(p.benches, sm.output)])
