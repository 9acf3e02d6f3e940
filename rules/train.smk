# Stage 3: training arms (LoRA or full fine-tuning) and post-training on general instruction data.
# Outputs are model.json and trainer_state.json, written when training ends (not the directory), so a preempted job keeps its
# checkpoints in results/models/{model}/checkpoints and resumes from them when retried.




rule train_arm:
    """Train one arm from its base model: causal-LM on documents (doc) or SFT on chat data (sft)."""
    input:
        base=lambda wc: spec_file(config["arms"][dc.split_unit(wc.arm)[0]]["base_model"]),
        data=lambda wc: arm_data(wc.arm),
    output:
        spec="results/models/{arm}/model.json",
        state="results/models/{arm}/trainer_state.json",
    params:
        method=lambda wc: config["arms"][dc.split_unit(wc.arm)[0]]["method"],
        train=lambda wc: dc.arm_train_cfg(config, wc.arm),
        gpus=TRAIN_RES["gpu"],
    log:
        "results/logs/train/{arm}.log",
    benchmark:
        "results/benchmarks/train/{arm}.tsv"
    threads: TRAIN_RES["threads"]
    resources:
        **res_kw(config["training"]),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train.py"


rule alias_arm:
    """A preservation arm reuses another arm's trained model (same weights, its own name)."""
    input:
        spec=lambda wc: f"results/models/{alias_source(wc.alias)}/model.json",
        state=lambda wc: f"results/models/{alias_source(wc.alias)}/trainer_state.json",
    output:
        spec="results/models/{alias}/model.json",
        state="results/models/{alias}/trainer_state.json",
    log:
        "results/logs/alias_arm/{alias}.log",
    benchmark:
        "results/benchmarks/alias_arm/{alias}.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
        gpu=0,
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/alias_arm.py"


rule replay_data:
    """Post-training data with replay: n standard samples + round(f x n) of the arm's documents."""
    input:
        posttrain="results/data/posttrain-{n}.jsonl",
        documents=lambda wc: [f"results/documents/{c}.jsonl" for c in replay_corpora(wc.arm_name)],
    output:
        "results/data/posttrain-{n}.replay-{arm_name}.jsonl",
    params:
        fraction=lambda wc: config["arms"][wc.arm_name]["replay_fraction"],
        seed=config["posttrain_data"]["seed"],
    log:
        "results/logs/replay_data/{n}.{arm_name}.log",
    benchmark:
        "results/benchmarks/replay_data/{n}.{arm_name}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/replay_data.py"


rule post_train:
    """Standard fine-tuning of a trained arm on n general instruction samples (plus replay)."""
    input:
        init="results/models/{punit}/model.json",
        arm_state="results/models/{punit}/trainer_state.json",
        data=posttrain_data_file,
    output:
        spec="results/models/{punit}.post{n}/model.json",
        state="results/models/{punit}.post{n}/trainer_state.json",
    params:
        method="sft",
        train=lambda wc: dc.arm_train_cfg(config, wc.punit, posttrain=True),
        merge_init=config["posttrain"]["merge_adapter"],
        gpus=TRAIN_RES["gpu"],
    log:
        "results/logs/post_train/{punit}.post{n}.log",
    benchmark:
        "results/benchmarks/post_train/{punit}.post{n}.tsv"
    threads: TRAIN_RES["threads"]
    resources:
        **res_kw(config["training"]),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train.py"
