# Stage 4: completions, judging, log-probability benchmarks, lm-eval tasks and per-model metrics.



rule completions:
    """Sample completions of one model on one judged benchmark (cached per item and epoch)."""
    input:
        spec=lambda wc: spec_file(wc.model),
        data=lambda wc: local_inputs(wc.judged),
    output:
        "results/completions/{model}/{judged}.jsonl",
    params:
        bench=lambda wc: config["benchmarks"][wc.judged],
        generation=lambda wc: gen_cfg(wc.judged),
        cache=lambda wc: f"results/cache/completions/{wc.model}/{wc.judged}.jsonl",
    log:
        "results/logs/completions/{model}/{judged}.log",
    benchmark:
        "results/benchmarks/completions/{model}/{judged}.tsv"
    threads: EVAL_RES["threads"]
    resources:
        **res_kw(config["evaluation"]),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/completions.py"


rule judge:
    """Judge completions: one verdict per question x dimension x variable combination x judge x epoch."""
    input:
        completions="results/completions/{model}/{judged}.jsonl",
        judges=lambda wc: judge_inputs(wc.judged),
        data=lambda wc: local_inputs(wc.judged),
    output:
        "results/scores/{model}/{judged}.jsonl",
        report="results/scores/{model}/{judged}.report.json",
    params:
        bench=lambda wc: config["benchmarks"][wc.judged],
        judges=lambda wc: resolved_judges(wc.judged),
        cache=lambda wc: f"results/cache/judge/{wc.model}/{wc.judged}.jsonl",
    log:
        "results/logs/judge/{model}/{judged}.log",
    benchmark:
        "results/benchmarks/judge/{model}/{judged}.tsv"
    threads: EVAL_RES["threads"]
    resources:
        gpu=judge_gpus,
        mem_mb=EVAL_RES["mem_mb"],
        runtime=EVAL_RES["runtime"],
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/judge.py"


rule score_ai_risk:
    """Power-seeking / corrigibility: log-probability of the matching answer under the chat template."""
    input:
        spec=lambda wc: spec_file(wc.model),
        data=lambda wc: local_inputs(wc.logprob),
    output:
        "results/scores/{model}/{logprob}.jsonl",
    params:
        bench=lambda wc: config["benchmarks"][wc.logprob],
    log:
        "results/logs/score_ai_risk/{model}/{logprob}.log",
    benchmark:
        "results/benchmarks/score_ai_risk/{model}/{logprob}.tsv"
    threads: EVAL_RES["threads"]
    resources:
        **res_kw(config["evaluation"]),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/score_ai_risk.py"


rule lm_eval:
    """An lm-eval task (e.g. HellaSwag) through lm-eval's Python API, with a cache per model."""
    input:
        spec=lambda wc: spec_file(wc.model),
        data=lambda wc: local_inputs(wc.lmeval),
    output:
        "results/lm_eval/{model}/{lmeval}.json",
    params:
        bench=lambda wc: config["benchmarks"][wc.lmeval],
        cache_dir=lambda wc: f"results/cache/lm_eval/{wc.model}",
    log:
        "results/logs/lm_eval/{model}/{lmeval}.log",
    benchmark:
        "results/benchmarks/lm_eval/{model}/{lmeval}.tsv"
    threads: EVAL_RES["threads"]
    resources:
        **res_kw(config["evaluation"]),
    conda:
        "../envs/evaluate.yaml"
    script:
        "../scripts/lm_eval.py"


rule metrics:
    """Aggregate one model's scores on one benchmark: metrics with bootstrap CIs, n and n_missing."""
    input:
        scores=metrics_input,
        data=lambda wc: local_inputs(wc.benchmark),
    output:
        "results/metrics/{model}/{benchmark}.json",
    params:
        bench=lambda wc: config["benchmarks"][wc.benchmark],
        n_bootstrap=config["evaluation"]["n_bootstrap"],
        seed=config["seed"],
    log:
        "results/logs/metrics/{model}/{benchmark}.log",
    benchmark:
        "results/benchmarks/metrics/{model}/{benchmark}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/metrics.py"
