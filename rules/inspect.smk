# Stage 4b: Inspect interop (inspect-ai is not in the core requirements: requirements-inspect.txt,
# envs/inspect.yaml). Inspect tasks run on our models, and logs of our own evaluations for
# `inspect view` / `inspect log dump`.

INSPECT = [b for b in BENCHMARKS if KIND_OF[b].stage == "inspect"]
INSPECT_LOGS = [L.inspect(m, b, "eval") for m in MODELS for b in JUDGED + INSPECT]


wildcard_constraints:
    inspect=_alt(INSPECT),


rule inspect_task:
    """An Inspect task on one model (served unmerged: base + LoRA adapter); the log and a summary."""
    input:
        spec=lambda wc: spec_file(wc.model),
        data=lambda wc: local_inputs(wc.inspect),
    output:
        summary=L.inspect("{model}", "{inspect}"),
        log=L.inspect("{model}", "{inspect}", "eval"),
    params:
        bench=lambda wc: config["benchmarks"][wc.inspect],
        generation=lambda wc: config["evaluation"]["generation"] | (config["benchmarks"][wc.inspect].get("generation") or {}),
    log:
        L.log("inspect_task", "{model}/{inspect}"),
    benchmark:
        L.bench("inspect_task", "{model}/{inspect}")
    threads: EVAL_RES["threads"]
    resources:
        **res_kw(config["evaluation"]),
    conda:
        "../envs/inspect.yaml"
    script:
        "../scripts/inspect_task.py"


rule inspect_export:
    """One model's completions and verdicts on one judged benchmark as an Inspect log (.eval)."""
    input:
        completions=L.completions("{model}", "{judged}"),
        scores=L.scores("{model}", "{judged}"),
        metrics=L.metrics("{model}", "{judged}"),
        data=lambda wc: local_inputs(wc.judged),
    output:
        L.inspect("{model}", "{judged}", "eval"),
    params:
        bench=lambda wc: config["benchmarks"][wc.judged],
    log:
        L.log("inspect_export", "{model}/{judged}"),
    benchmark:
        L.bench("inspect_export", "{model}/{judged}")
    conda:
        "../envs/inspect.yaml"
    script:
        "../scripts/inspect_export.py"


rule inspect_logs:
    """Target: the Inspect log of every evaluated model x benchmark (judged and Inspect tasks)."""
    input:
        INSPECT_LOGS,
