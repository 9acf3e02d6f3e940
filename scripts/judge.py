"""rule judge: judge one model's completions on every judged benchmark (each judge model is loaded
once and shared by the benchmarks)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune.evaluation.judging import judge_completions, shared_judge_backends
from doctune.workflow.pipeline import run_each

sm = snakemake
p = sm.params
backends = shared_judge_backends()  # judge name -> backend, made on first use


def unit(bench, comp, out, report):
    judges = {k: dict(v) for k, v in p.judges[bench].items()}
    return {"name": bench, "outputs": [out, report], "inputs": [comp, *p.data[bench]],
            "config": {"bench": p.benches[bench], "judges": p.judges[bench]},
            "body": lambda: judge_completions(completions=comp, benchmark=bench, bench_cfg=dict(p.benches[bench]),
                                              judges=judges, out=out, cache=p.cache[bench], report=report,
                                              backends=backends)}


assert [Path(o).name.rsplit(".", 1)[0] for o in sm.output.scores] == list(p.benches), "outputs and benchmarks out of step"
run_each(sm, [unit(b, c, o, r) for b, c, o, r in zip(p.benches, sm.input.completions, sm.output.scores,
                                                      sm.output.reports)])
