# Stage 3: training arms (LoRA or full fine-tuning) and post-training on general instruction data.
# Outputs are model.json and trainer_state.json, written when training ends (not the directory), so a preempted job keeps its
# checkpoints in results/models/{model}/checkpoints and resumes from them when retried.




rule train_arm:
    """Train one arm from its base model: causal-LM on documents (doc) or SFT on chat data (sft)."""
    input:
        base=lambda wc: spec_file(config["arms"][wc.arm]["base_model"]),
        data=lambda wc: arm_data(wc.arm),
    output:
        spec="results/models/{arm}/model.json",
        state="results/models/{arm}/trainer_state.json",
    params:
        method=lambda wc: config["arms"][wc.arm]["method"],
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


rule post_train:
    """Standard fine-tuning of a trained arm on n general instruction samples."""
    input:
        init="results/models/{arm}/model.json",
        arm_state="results/models/{arm}/trainer_state.json",
        data="results/data/posttrain-{n}.jsonl",
    output:
        spec="results/models/{arm}.post{n}/model.json",
        state="results/models/{arm}.post{n}/trainer_state.json",
    params:
        method="sft",
        train=lambda wc: dc.arm_train_cfg(config, wc.arm, posttrain=True),
        merge_init=config["posttrain"]["merge_adapter"],
        gpus=TRAIN_RES["gpu"],
    log:
        "results/logs/post_train/{arm}.post{n}.log",
    benchmark:
        "results/benchmarks/post_train/{arm}.post{n}.tsv"
    threads: TRAIN_RES["threads"]
    resources:
        **res_kw(config["training"]),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train.py"
