"""rule replay_data: post-training samples plus replayed documents of the arm."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.data.replay import write_replay
from doctune.workflow.pipeline import run

run(snakemake, lambda: write_replay(snakemake.input.posttrain, list(snakemake.input.documents),
                                    float(snakemake.params.fraction), int(snakemake.params.seed),
                                    snakemake.output[0]))
