"""rule dose_response: each sweep's curve, point-vs-control tests and trend tests (doctune.analysis.dose_response)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.analysis.dose_response import run_dose_response
from doctune.workflow.pipeline import run

p = snakemake.params


def main():
    rows = run_dose_response([dict(s) for s in p.plan], {m: dict(b) for m, b in p.metrics_files.items()},
                             {a: list(fs) for a, fs in p.states.items()}, dict(p.stats), snakemake.output[0],
                             posttrain_sizes=list(p.posttrain_sizes), demo=bool(p.demo))
    tracking = snakemake.config.get("tracking") or {}
    if tracking.get("backend"):   # each sweep point's metrics where researchers browse runs (not a rerun trigger)
        from doctune.training.tracking import log_sweep_metrics

        log_sweep_metrics(tracking, project_default=snakemake.config["run_name"],
                          group=snakemake.config["run_name"],
                          rows=[r for r in rows if r["row_type"] == "point" and r.get("model")])


run(snakemake, main)
