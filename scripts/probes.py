"""rule probes: model-written probe items for one probe benchmark (doctune.evaluation.kinds.probe.writing)."""
import _doctune_path  # noqa: F401  (puts src/ on sys.path)

from doctune.documents.corpus import apply_run_settings, load_corpus_def, load_grid
from doctune.evaluation.kinds.probe.writing import write_probes
from doctune.workflow.pipeline import run

sm = snakemake


def main():
    p = sm.params
    ccfg = dict(p.corpus)
    cdef = apply_run_settings(load_corpus_def(p.resources_dir, p.corpus_name, sm.input.corpus), ccfg)
    with open(sm.input.template, encoding="utf-8") as fh:
        template = fh.read()
    write_probes(sm.wildcards.probe, dict(p.write), cdef, load_grid(p.resources_dir, cdef)["domains"],
                 sm.input.documents, template, dict(p.generator), sm.output.probe_items, sm.output.report, p.cache)


run(sm, main)
