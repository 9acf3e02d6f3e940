# Stage 4a: model-written probe items (benchmarks of kind probe with `write:`), for corpora nobody
# has written probes for. Their items feed the probe benchmark like a local file.


if PROBES_WRITTEN:

    rule probes:
        """Write, validate and store the items of one model-written probe benchmark (every reply
        cached: a rerun or a larger n pays for no reply twice)."""
        input:
            corpus=lambda wc: config["corpora"][probe_corpus(wc)].get("definition")
            or f"{RES}/corpora/{probe_corpus(wc)}.yaml",
            documents=lambda wc: L.documents(probe_corpus(wc)),
            grid=f"{RES}/grid/domains.txt",
            template=lambda wc: str(probe_template(config["benchmarks"][wc.probe]["write"])),
            model=lambda wc: backend_model_inputs(probe_generator(wc)),
        output:
            probe_items=L.probes(),
            report=L.probes_report(),
        params:
            write=lambda wc: config["benchmarks"][wc.probe]["write"],
            corpus_name=probe_corpus,
            corpus=lambda wc: config["corpora"][probe_corpus(wc)],
            generator=lambda wc: dc.resolve_backend(config, probe_generator(wc)),
            resources_dir=RES,
            cache=lambda wc: L.cache("probes", f"{wc.probe}.jsonl"),
        log:
            L.log("probes", "{probe}"),
        benchmark:
            L.bench("probes", "{probe}")
        threads: lambda wc: resources_of(probe_generator(wc))["threads"]
        resources:
            gpu=lambda wc: resources_of(probe_generator(wc))["gpu"],
            mem_mb=lambda wc: resources_of(probe_generator(wc))["mem_mb"],
            runtime=lambda wc: resources_of(probe_generator(wc))["runtime"],
        conda:
            "../envs/generate.yaml"
        script:
            "../scripts/probes.py"
