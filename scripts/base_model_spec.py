"""rule base_model_spec: model.json of an untrained base model."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.models import base_spec, write_spec
from doctune.workflow.pipeline import run

run(snakemake, lambda: write_spec(snakemake.output[0],
                                  base_spec(snakemake.wildcards.base, dict(snakemake.params.base))))
