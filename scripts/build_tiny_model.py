"""rule build_tiny_model: a tiny random Llama + BPE tokenizer, offline."""
from doctune.models import build_tiny_model
from doctune.pipeline import run

run(snakemake, lambda: build_tiny_model(snakemake.output[0], text_files=[snakemake.input.text],
                                        seed=snakemake.params.seed))
