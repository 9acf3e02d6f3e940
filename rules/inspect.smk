# Stage 4b: Inspect interop. Logs of our own evaluations for `inspect view` / `inspect log dump`
# (inspect-ai is not in the core requirements: requirements-inspect.txt, envs/inspect.yaml).

INSPECT_LOGS = [f"results/inspect/{m}/{b}.eval" for m in MODELS for b in JUDGED]


rule inspect_export:
    """One model's completions and verdicts on one judged benchmark as an Inspect log (.eval)."""
    input:
        completions="results/completions/{model}/{judged}.jsonl",
        scores="results/scores/{model}/{judged}.jsonl",
        metrics="results/metrics/{model}/{judged}.json",
        data=lambda wc: local_inputs(wc.judged),
    output:
        "results/inspect/{model}/{judged}.eval",
    params:
        bench=lambda wc: config["benchmarks"][wc.judged],
    log:
        "results/logs/inspect_export/{model}/{judged}.log",
    benchmark:
        "results/benchmarks/inspect_export/{model}/{judged}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/inspect.yaml"
    script:
        "../scripts/inspect_export.py"


rule inspect_logs:
    """Target: the Inspect log of every evaluated model x judged benchmark."""
    input:
        INSPECT_LOGS,
