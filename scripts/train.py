"""rules train_arm and post_train: train a LoRA (or full model), resuming from checkpoints."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from pathlib import Path

from doctune.io import read_json, sha256_path
from doctune.models import model_fingerprint
from doctune.workflow.pipeline import launch_training, prepare_train_dir, run


def main():
    out_dir = str(Path(snakemake.output.spec).parent)
    post = snakemake.rule == "post_train"
    init = read_json(snakemake.input.init) if post else None
    base = init if post else read_json(snakemake.input.base)
    data = snakemake.input.data
    data = [str(data)] if isinstance(data, str) else list(map(str, data))
    train_cfg = dict(snakemake.params.train)
    kwargs = dict(method=snakemake.params.method, data=data, base_spec=base, train_cfg=train_cfg,
                  out_dir=out_dir, init_spec=init, merge_init=bool(snakemake.params.get("merge_init", True)),
                  name=Path(out_dir).name)
    prepare_train_dir(out_dir, {"kwargs": kwargs, "data": [sha256_path(d) for d in data],
                                "init": model_fingerprint(init or base)})
    # tracking comes from the config, not params: changing it must not rerun or restart training
    kwargs.update(tracking=snakemake.config.get("tracking"), run_group=snakemake.config.get("run_name"))
    launch_training(kwargs, int(snakemake.params.gpus))


run(snakemake, main)
