# Stage 4: completions, judging, log-probability benchmarks, lm-eval tasks and per-model metrics.



# One job per model and stage, for all of the model's benchmarks of that stage: the model (or the
# judge) is loaded once per job, not once per benchmark (doctune.workflow.pipeline.run_each keeps missing
# data and provenance per benchmark). Caches are per benchmark, so a rerun after a change to one
# benchmark's settings regenerates only what changed and reloads the model once.


if JUDGED:

    rule completions:
        """Sample completions of one model on every judged benchmark (cached per item and epoch)."""
        input:
            spec=lambda wc: spec_file(wc.model),
            data=stage_data(JUDGED),
        output:
            stage_outputs(L.completions("{model}", "{b}"), JUDGED),
        params:
            benches={b: config["benchmarks"][b] for b in JUDGED},
            generation={b: gen_cfg(b) for b in JUDGED},
            data={b: local_inputs(b) for b in JUDGED},
            cache=lambda wc: {b: L.cache("completions", wc.model, f"{b}.jsonl") for b in JUDGED},
        log:
            L.log("completions", "{model}"),
        benchmark:
            L.bench("completions", "{model}")
        threads: EVAL_RES["threads"]
        resources:
            **res_kw(config["evaluation"]),
        conda:
            "../envs/evaluate.yaml"
        script:
            "../scripts/completions.py"

    rule judge:
        """Judge one model's completions on every judged benchmark: one verdict per question x
        dimension x variable combination x judge x epoch."""
        input:
            completions=stage_outputs(L.completions("{model}", "{b}"), JUDGED),
            judges=sorted({f for b in JUDGED for f in judge_inputs(b)}),
            data=stage_data(JUDGED),
            prompts=judge_prompt_files(),
        output:
            scores=stage_outputs(L.scores("{model}", "{b}"), JUDGED),
            reports=stage_outputs(L.judge_report("{model}", "{b}"), JUDGED),
        params:
            benches={b: config["benchmarks"][b] for b in JUDGED},
            judges={b: resolved_judges(b) for b in JUDGED},
            data={b: local_inputs(b) for b in JUDGED},
            cache=lambda wc: {b: L.cache("judge", wc.model, f"{b}.jsonl") for b in JUDGED},
        log:
            L.log("judge", "{model}"),
        benchmark:
            L.bench("judge", "{model}")
        threads: EVAL_RES["threads"]
        resources:
            gpu=max(judge_gpus(b) for b in JUDGED),
            mem_mb=EVAL_RES["mem_mb"],
            runtime=EVAL_RES["runtime"],
        conda:
            "../envs/evaluate.yaml"
        script:
            "../scripts/judge.py"


    rule judge_gate:
        """The judge validity gate: every judge of every judged benchmark on the benchmark's
        labelled answers (judge_validation), before its verdicts are used by the metrics."""
        input:
            judges=sorted({f for b in JUDGED for f in judge_inputs(b)}),
            data=stage_data(JUDGED),
            labelled=sorted({f for b in JUDGED for f in gate_sets(b)}),
            prompts=judge_prompt_files(),
        output:
            [GATE[b] for b in JUDGED],
        params:
            benches={b: config["benchmarks"][b] for b in JUDGED},
            judges={b: resolved_judges(b) for b in JUDGED},
            data={b: local_inputs(b) + gate_sets(b) for b in JUDGED},
            gate=config["judge_gate"],
            cache={b: L.cache("judge_gate", f"{b}.jsonl") for b in JUDGED},
        log:
            L.log("judge_gate"),
        benchmark:
            L.bench("judge_gate")
        threads: EVAL_RES["threads"]
        resources:
            gpu=max(judge_gpus(b) for b in JUDGED),
            mem_mb=EVAL_RES["mem_mb"],
            runtime=EVAL_RES["runtime"],
        conda:
            "../envs/evaluate.yaml"
        script:
            "../scripts/judge_gate.py"


if LOGPROB:

    rule score_logprob:
        """Benchmarks of stage "logprob" (power-seeking, corrigibility, preference probes):
        log-probabilities of answers under the chat template, for one model on all of them (the
        model is loaded once)."""
        input:
            spec=lambda wc: spec_file(wc.model),
            data=stage_data(LOGPROB),
        output:
            stage_outputs(L.scores("{model}", "{b}"), LOGPROB),
        params:
            benches={b: config["benchmarks"][b] for b in LOGPROB},
            data={b: local_inputs(b) for b in LOGPROB},
        log:
            L.log("score_logprob", "{model}"),
        benchmark:
            L.bench("score_logprob", "{model}")
        threads: EVAL_RES["threads"]
        resources:
            **res_kw(config["evaluation"]),
        conda:
            "../envs/evaluate.yaml"
        script:
            "../scripts/score_logprob.py"


if LMEVAL:

    rule lm_eval:
        """lm-eval tasks (e.g. HellaSwag) through lm-eval's Python API for one model, with a cache
        per model; one task index for the needed tasks only."""
        input:
            spec=lambda wc: spec_file(wc.model),
            data=stage_data(LMEVAL),
        output:
            stage_outputs(L.lm_eval("{model}", "{b}"), LMEVAL),
        params:
            benches={b: config["benchmarks"][b] for b in LMEVAL},
            data={b: local_inputs(b) for b in LMEVAL},
            cache_dir=lambda wc: L.cache("lm_eval", wc.model),
        log:
            L.log("lm_eval", "{model}"),
        benchmark:
            L.bench("lm_eval", "{model}")
        threads: EVAL_RES["threads"]
        resources:
            **res_kw(config["evaluation"]),
        conda:
            "../envs/evaluate.yaml"
        script:
            "../scripts/lm_eval.py"


rule metrics:
    """Aggregate one model's scores on every benchmark: metrics with bootstrap CIs, n and n_missing,
    the completeness audit (n_planned, n_scored), and for judged benchmarks the judge gate's verdict."""
    input:
        scores=lambda wc: [metrics_input(wc.model, b) for b in BENCHMARKS],
        data=stage_data(BENCHMARKS),
        gates=list(GATE.values()),
    output:
        stage_outputs(L.metrics("{model}", "{b}"), BENCHMARKS),
    params:
        benches={b: config["benchmarks"][b] for b in BENCHMARKS},
        data={b: local_inputs(b) for b in BENCHMARKS},
        gates=GATE,
        epochs={b: gen_cfg(b)["epochs"] for b in BENCHMARKS},   # the completeness audit's plan
        n_bootstrap=config["evaluation"]["n_bootstrap"],
        seed=config["seed"],
    log:
        L.log("metrics", "{model}"),
    benchmark:
        L.bench("metrics", "{model}")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/metrics.py"
