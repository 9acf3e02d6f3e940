# Stage 2: training data for the instruction-tuning control and for post-training.


rule instruct_data:
    """Question-answer pairs on the corpus themes, for the instruction-tuning control arm."""
    input:
        corpus_docs=instruct_corpus_docs,
        model=lambda wc: backend_model_inputs(config["generators"][config["instruct_data"]["generator"]]),
    output:
        data=L.instruct(),
        report=L.instruct_report(),
    params:
        generator=lambda wc: dc.resolve_backend(config, config["generators"][config["instruct_data"]["generator"]]),
        instruct=config["instruct_data"],
        corpus_def=lambda wc: config["instruct_data"].get("corpus"),
        resources_dir=RES,
        cache=L.cache("instruct.jsonl"),
    log:
        L.log("instruct_data"),
    benchmark:
        L.bench("instruct_data")
    threads: lambda wc: resources_of(config["generators"][config["instruct_data"]["generator"]])["threads"]
    resources:
        gpu=lambda wc: resources_of(config["generators"][config["instruct_data"]["generator"]])["gpu"],
        mem_mb=lambda wc: resources_of(config["generators"][config["instruct_data"]["generator"]])["mem_mb"],
        runtime=lambda wc: resources_of(config["generators"][config["instruct_data"]["generator"]])["runtime"],
    conda:
        "../envs/generate.yaml"
    script:
        "../scripts/instruct_data.py"


rule posttrain_data:
    """n standard fine-tuning samples (each smaller sample a prefix of the larger)."""
    input:
        lambda wc: [p for p in [config["posttrain_data"]["source"].get("path")] if p],
    output:
        L.posttrain(),
    params:
        source=config["posttrain_data"]["source"],
        seed=config["posttrain_data"]["seed"],
    log:
        L.log("posttrain_data", "{n}"),
    benchmark:
        L.bench("posttrain_data", "{n}")
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/posttrain_data.py"
