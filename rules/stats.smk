# Stage 5: comparisons with significance tests, the long-format summary, figures and the report.

METRICS = {m: {b: f"results/metrics/{m}/{b}.json" for b in BENCHMARKS} for m in REPORTED}


rule aggregate_seeds:
    """Seed average of an arm trained with several seeds: per-item scores averaged over seeds."""
    input:
        lambda wc: [f"results/metrics/{u}/{wc.benchmark}.json" for u in AGG[wc.agg]],
    output:
        "results/metrics/{agg}/{benchmark}.json",
    params:
        seed_models=lambda wc: AGG[wc.agg],
        n_bootstrap=config["evaluation"]["n_bootstrap"],
        seed=config["seed"],
    log:
        "results/logs/aggregate_seeds/{agg}/{benchmark}.log",
    benchmark:
        "results/benchmarks/aggregate_seeds/{agg}/{benchmark}.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/aggregate_seeds.py"

ALL_METRICS = [p for d in METRICS.values() for p in d.values()]


rule comparisons:
    """Paired (or unpaired) tests, bootstrap CIs of differences and Holm correction."""
    input:
        ALL_METRICS,
    output:
        report(
            "results/stats/comparisons.tsv",
            caption="../report/comparisons.rst",
            category="Statistics",
        ),
    params:
        stats=config["stats"],
        posttrain_sizes=POST_SIZES,
        metrics_files=METRICS,
        demo=config["demo"],
    log:
        "results/logs/comparisons.log",
    benchmark:
        "results/benchmarks/comparisons.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
        gpu=0,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/comparisons.py"


rule summary:
    """results/summary.tsv: model, benchmark, metric, value, ci_low, ci_high, n, n_missing."""
    input:
        ALL_METRICS,
    output:
        report("results/summary.tsv", caption="../report/summary.rst", category="Summary"),
    params:
        metrics_files=METRICS,
        demo=config["demo"],
    log:
        "results/logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/summary.py"


TRAINED = TRAINED_UNITS + dc.posttrain_units(config)


rule plots:
    """Robustness curve, per-dimension AHB profile and training loss curves."""
    input:
        metrics=ALL_METRICS,
        trained=[f"results/models/{m}/trainer_state.json" for m in TRAINED],
    output:
        robustness=report("results/plots/robustness.png", caption="../report/robustness.rst", category="Figures"),
        profile=report("results/plots/dimension_profile.png", caption="../report/dimension_profile.rst", category="Figures"),
        loss=report("results/plots/loss_curves.png", caption="../report/loss_curves.rst", category="Figures"),
    params:
        metrics_files=METRICS,
        arms=ARMS,
        posttrain_arms=POST_ARMS,
        posttrain_sizes=POST_SIZES,
        models=MODELS,
        benchmarks=BENCH_KIND,
        trained=TRAINED,
        demo=config["demo"],
    log:
        "results/logs/plots.log",
    benchmark:
        "results/benchmarks/plots.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/plots.py"
