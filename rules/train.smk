# Stage 3: training arms (LoRA or full fine-tuning) and post-training on general instruction data.
# Outputs are model.json and trainer_state.json, written when training ends (not the directory), so a preempted job keeps its
# checkpoints in results/models/{model}/checkpoints and resumes from them when retried.




rule train_arm:
    """Train one arm from its base model: causal-LM on documents (doc) or SFT on chat data (sft)."""
    input:
        base=lambda wc: spec_file(config["arms"][dc.split_unit(wc.arm)[0]]["base_model"]),
        data=lambda wc: arm_data(wc.arm),
    output:
        spec=L.spec("{arm}"),
        state=L.state("{arm}"),
    params:
        method=lambda wc: config["arms"][dc.split_unit(wc.arm)[0]]["method"],
        train=lambda wc: dc.arm_train_cfg(config, wc.arm),
        gpus=TRAIN_RES["gpu"],
    log:
        L.log("train", "{arm}"),
    benchmark:
        L.bench("train", "{arm}")
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
        spec=lambda wc: L.spec(alias_source(wc.alias)),
        state=lambda wc: L.state(alias_source(wc.alias)),
    output:
        spec=L.spec("{alias}"),
        state=L.state("{alias}"),
    log:
        L.log("alias_arm", "{alias}"),
    benchmark:
        L.bench("alias_arm", "{alias}")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/alias_arm.py"


rule replay_data:
    """Post-training data with replay: n standard samples + round(f x n) of the arm's documents."""
    input:
        posttrain=L.posttrain(),
        documents=lambda wc: replay_documents(wc.arm_name),
    output:
        L.posttrain(replay="{arm_name}"),
    params:
        fraction=lambda wc: config["arms"][wc.arm_name]["replay_fraction"],
        seed=config["posttrain_data"]["seed"],
    log:
        L.log("replay_data", "{n}.{arm_name}"),
    benchmark:
        L.bench("replay_data", "{n}.{arm_name}")
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/replay_data.py"


rule post_train:
    """Standard fine-tuning of a trained arm on n general instruction samples (plus replay)."""
    input:
        init=L.spec("{punit}"),
        arm_state=L.state("{punit}"),
        data=posttrain_data_file,
    output:
        spec=L.spec("{punit}.post{n}"),
        state=L.state("{punit}.post{n}"),
    params:
        method="sft",
        train=lambda wc: dc.arm_train_cfg(config, wc.punit, posttrain=True),
        merge_init=config["posttrain"]["merge_adapter"],
        gpus=TRAIN_RES["gpu"],
    log:
        L.log("post_train", "{punit}.post{n}"),
    benchmark:
        L.bench("post_train", "{punit}.post{n}")
    threads: TRAIN_RES["threads"]
    resources:
        **res_kw(config["training"]),
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train.py"
