# Stage 5: comparisons with significance tests, the long-format summary, figures and the report.

METRICS = {m: {b: L.metrics(m, b) for b in BENCHMARKS} for m in REPORTED}


rule aggregate_seeds:
    """Seed average of an arm trained with several seeds: per-item scores averaged over seeds."""
    input:
        lambda wc: [L.metrics(u, wc.benchmark) for u in AGG[wc.agg]],
    output:
        L.metrics("{agg}", "{benchmark}"),
    params:
        seed_models=lambda wc: AGG[wc.agg],
        n_bootstrap=config["evaluation"]["n_bootstrap"],
        seed=config["seed"],
    log:
        L.log("aggregate_seeds", "{agg}/{benchmark}"),
    benchmark:
        L.bench("aggregate_seeds", "{agg}/{benchmark}")
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
            L.stats("comparisons"),
            caption="../report/comparisons.rst",
            category="Comparisons",
        ),
    params:
        stats=config["stats"],
        posttrain_sizes=POST_SIZES,
        metrics_files=METRICS,
        demo=config["demo"],
    log:
        L.log("comparisons"),
    benchmark:
        L.bench("comparisons")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/comparisons.py"


# the evaluated models the check reads (a model left out of evaluation.models is reported missing)
MC_MODELS = sorted({m for p in MC_PAIRS for m in (p["arm"], p["control"], p["base"]) if m in REPORTED})
MC_STATES = {a: [L.state(u) for u in trained_units_of(a)]
             for p in MC_PAIRS for a in (p["arm"], p["control"])}

# each probe's items and its corpus's documents, for the word-overlap check
MC_OVERLAP = {p[f"{side}_probe"]: (config["benchmarks"][p[f"{side}_probe"]]["source"]["path"],
                                   L.documents(p[f"{side}_corpus"]),
                                   config["benchmarks"][p[f"{side}_probe"]].get("max_items"))
              for p in MC_PAIRS for side in ("arm", "control")
              if (config["benchmarks"][p[f"{side}_probe"]].get("source") or {}).get("path")}


if MC_PAIRS:

    rule manipulation_check:
        """Judge-free: each document arm against its matched control on its own corpus's probe and
        on the control's, and each against the untrained model (doctune.analysis.manipulation)."""
        input:
            metrics=sorted({L.metrics(m, b) for p in MC_PAIRS for m in MC_MODELS
                            for b in (p["arm_probe"], p["control_probe"])}),
            states=sorted({f for fs in MC_STATES.values() for f in fs}),
            overlap=sorted({f for pair in MC_OVERLAP.values() for f in pair[:2]}),
        output:
            report(L.stats("manipulation"), caption="../report/manipulation.rst", category="Manipulation check"),
        params:
            pairs=MC_PAIRS,
            metrics_files={m: {b: L.metrics(m, b) for b in BENCHMARKS} for m in MC_MODELS},
            states=MC_STATES,
            overlap=MC_OVERLAP,
            stats=config["stats"],
            check=config["manipulation_check"],
            demo=config["demo"],
        log:
            L.log("manipulation_check"),
        benchmark:
            L.bench("manipulation_check")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/manipulation_check.py"

    rule manipulation_plot:
        """The manipulation check as a figure: every difference with its CI, per pair."""
        input:
            L.stats("manipulation"),
        output:
            report(L.plot("manipulation"), caption="../report/manipulation.rst", category="Figures"),
        params:
            demo=config["demo"],
            alpha=config["stats"]["alpha"],
            kinds=BENCH_KIND,
        log:
            L.log("manipulation_plot"),
        benchmark:
            L.bench("manipulation_plot")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/manipulation_plot.py"


DOSE_MODELS = sorted({m for s in SWEEPS for m in dose_models(s)})
DOSE_STATES = {p["arm"]: [L.state(u) for u in trained_units_of(p["arm"])] for s in SWEEPS for p in s["points"]}


if SWEEPS:

    rule dose_response:
        """Each sweep's curve per benchmark: points with CIs and training tokens, each point against
        the control, the slope and monotone-trend tests (doctune.analysis.dose_response)."""
        input:
            metrics=[L.metrics(m, b) for m in DOSE_MODELS for b in BENCHMARKS],
            states=sorted({f for fs in DOSE_STATES.values() for f in fs}),
        output:
            report(L.stats("dose_response"), caption="../report/dose_response.rst", category="Dose-response"),
        params:
            plan=SWEEPS,
            metrics_files={m: {b: L.metrics(m, b) for b in BENCHMARKS} for m in DOSE_MODELS},
            states=DOSE_STATES,
            stats=config["stats"],
            posttrain_sizes=POST_SIZES,
            demo=config["demo"],
        log:
            L.log("dose_response"),
        benchmark:
            L.bench("dose_response")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/dose_response.py"

    rule dose_plot:
        """One sweep's dose-response figure: value on x, the base model and the control as reference lines."""
        input:
            L.stats("dose_response"),
        output:
            report(L.plot("dose_{sweep}"), caption="../report/dose_response.rst", category="Figures"),
        params:
            demo=config["demo"],
            alpha=config["stats"]["alpha"],
            kinds=BENCH_KIND,
        log:
            L.log("dose_plot", "{sweep}"),
        benchmark:
            L.bench("dose_plot", "{sweep}")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/dose_plot.py"


AGREE = config["agreement"]
AGREE_ON = bool(JUDGED) and AGREE["export"]
RATINGS = [AGREE["ratings"]] if isinstance(AGREE["ratings"], str) else list(AGREE["ratings"] or [])
JUDGED_SCORES = {m: {b: L.scores(m, b) for b in JUDGED} for m in MODELS}
JUDGED_COMPLETIONS = {m: {b: L.completions(m, b) for b in JUDGED} for m in MODELS}


rule rating_sample:
    """A stratified sample of judged items for people to rate (CSV + self-contained HTML page)."""
    input:
        scores=[p for d in JUDGED_SCORES.values() for p in d.values()],
        completions=[p for d in JUDGED_COMPLETIONS.values() for p in d.values()],
    output:
        csv=report(L.agreement("rating_sample.csv"), caption="../report/rating_sample.rst", category="Judge validation"),
        html=report(L.agreement("rating_page.html"), caption="../report/rating_sample.rst", category="Judge validation"),
        key=L.agreement("rating_key.json"),
    params:
        per_stratum=AGREE["per_stratum"],
        seed=AGREE["seed"],
        scores=JUDGED_SCORES,
        completions=JUDGED_COMPLETIONS,
        benchmarks={b: config["benchmarks"][b] for b in JUDGED},
    log:
        L.log("rating_sample"),
    benchmark:
        L.bench("rating_sample")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/rating_sample.py"


rule agreement:
    """Agreement of people (ratings files) and judges, and between judges, with bootstrap CIs."""
    input:
        key=L.agreement("rating_key.json"),
        ratings=RATINGS,
        scores=[p for d in JUDGED_SCORES.values() for p in d.values()],
    output:
        L.agreement("agreement.json"),
    params:
        scores=JUDGED_SCORES,
        n_bootstrap=AGREE["n_bootstrap"],
        seed=AGREE["seed"],
    log:
        L.log("agreement"),
    benchmark:
        L.bench("agreement")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/agreement.py"


rule summary:
    """results/summary.tsv: the manipulation check first, then model, benchmark, metric, value,
    ci_low, ci_high, n, n_missing for every metric, the judge gates and the agreement rows."""
    input:
        metrics=ALL_METRICS,
        agreement=[L.agreement("agreement.json")] if AGREE_ON else [],
        manipulation=[L.stats("manipulation")] if MC_PAIRS else [],
        dose=[L.stats("dose_response")] if SWEEPS else [],
        contamination=list(CONTAM_TABLES.values()) + list(CONTAM_FILTERED.values()),
        gates=list(GATE.values()),
    output:
        report(L.summary(), caption="../report/summary.rst", category="Summary"),
    params:
        metrics_files=METRICS,
        gates=GATE,
        contamination=CONTAM_TABLES,
        filtered=CONTAM_FILTERED,
        demo=config["demo"],
    log:
        L.log("summary"),
    benchmark:
        L.bench("summary")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/summary.py"


TRAINED = TRAINED_UNITS + dc.posttrain_units(config)
# the training method of each trained model: its own panel of the loss curves
TRAIN_METHOD = {u: "post" if ".post" in u else config["arms"][dc.split_unit(u)[0]]["method"] for u in TRAINED}


rule plots:
    """Robustness curves, per-dimension profiles, the model x benchmark overview and loss curves."""
    input:
        metrics=ALL_METRICS,
        comparisons=L.stats("comparisons"),
        trained=[L.state(m) for m in TRAINED],
    output:
        robustness=report(L.plot("robustness"), caption="../report/robustness.rst", category="Figures"),
        profile=report(L.plot("dimension_profile"), caption="../report/dimension_profile.rst", category="Figures"),
        overview=report(L.plot("overview"), caption="../report/overview.rst", category="Figures"),
        loss=report(L.plot("loss_curves"), caption="../report/loss_curves.rst", category="Figures"),
    params:
        metrics_files=METRICS,
        arms=[a for a in ARMS if a not in SWEEP_POINTS],   # sweep points have their own figure
        posttrain_arms=POST_ARMS,
        posttrain_sizes=POST_SIZES,
        base_of={a: config["arms"][a].get("base_model") for a in POST_ARMS},
        models=REPORTED,
        benchmarks=BENCH_KIND,
        trained=TRAINED,
        methods=TRAIN_METHOD,
        alpha=config["stats"]["alpha"],
        demo=config["demo"],
    log:
        L.log("plots"),
    benchmark:
        L.bench("plots")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/plots.py"
