"""rule alias_arm: a preservation arm reuses another arm's trained model under its own name."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)
from doctune.io import atomic_write_json, read_json
from doctune.workflow.pipeline import run


def main():
    spec = read_json(snakemake.input.spec)
    source = spec.get("name")
    spec["name"] = snakemake.wildcards.alias
    spec["reuses"] = source
    state = read_json(snakemake.input.state)
    state["reuses"] = source
    atomic_write_json(snakemake.output.spec, spec)
    atomic_write_json(snakemake.output.state, state)


run(snakemake, main)
