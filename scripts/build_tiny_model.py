"""rule build_tiny_model: a tiny random Llama + BPE tokenizer, offline."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.models import build_tiny_model
from doctune.workflow.pipeline import run

run(snakemake, lambda: build_tiny_model(snakemake.output[0], text_files=[snakemake.input.text],
                                        seed=snakemake.params.seed))
