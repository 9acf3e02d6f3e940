# doctune: document-tuning research pipeline. See README.md.
#   snakemake results/summary.tsv -c4                      # paper config (config/config.yaml)
#   snakemake results/summary.tsv -c2 --configfile config/demo.yaml   # offline demo
# Outputs go to runs/RUN_NAME/ (config key run_name: paper, small, demo), target paths are
# relative to it: the demo's summary is runs/demo/results/summary.tsv.
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from doctune.workflow.config import LAUNCH_DIR_ENV, launch_dir, localize_paths, run_dir
from doctune.workflow.preflight import snakefile_preflight

# config/config.yaml (the paper) is the default; a --configfile on the command line replaces it
# rather than being merged into it, so the demo never inherits the paper's arms.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# Local paths in the config are written relative to where Snakemake starts (the repository root);
# a path that exists only in the workflow's folder (Snakemake started elsewhere) becomes absolute.
# A job started as its own process (SLURM, cluster, group jobs) re-parses this file from the run
# folder: launch_dir() gives it the folder the main process started from (doctune.workflow.config).
LAUNCH_DIR = launch_dir(Path.cwd(), workflow.is_main_process, os.environ)
os.environ[LAUNCH_DIR_ENV] = str(LAUNCH_DIR)
config.update(localize_paths(config, [LAUNCH_DIR, Path(workflow.basedir)], LAUNCH_DIR))

# Preflight, before any job starts and in dry runs too: the config (schema, references) and every
# input the run will read (corpora, grid lists, post-training records, benchmark files, model
# paths, hub ids, API keys). Each problem is one line naming the file and line or config key;
# nothing runs until all are fixed. Jobs re-parsing this file check the schema only.
config.update(snakefile_preflight(config, workflow.basedir, workflow.is_main_process))

# At the end of a dry run (snakemake -n), the plan on stderr: API cost, GPU-hours and the smallest
# differences the comparisons can detect (doctune.workflow.plan; off with plan.dry_run: false).
# Other runs only register an exit handler that does nothing.
if workflow.is_main_process:
    from doctune.workflow.plan import print_after_dry_run

    print_after_dry_run(workflow, config, LAUNCH_DIR)

# Each run writes under its own folder, runs/RUN_NAME/ (config key run_name): rule paths stay
# results/... relative to it, and it holds its own .snakemake/ (locks, metadata), so the demo,
# small and paper runs sit side by side and can run at once. Snakemake's --directory overrides it.
workdir: str(LAUNCH_DIR / run_dir(config))


# From here on the config's local paths name the same files from the run folder.
config.update(localize_paths(config, [LAUNCH_DIR, Path(workflow.basedir)], Path.cwd()))


include: "rules/common.smk"
include: "rules/documents.smk"
include: "rules/data.smk"
include: "rules/contamination.smk"
include: "rules/train.smk"
include: "rules/probes.smk"
include: "rules/evaluate.smk"
include: "rules/inspect.smk"
include: "rules/stats.smk"


add_code_params()  # a change to package code a rule's script imports reruns that rule (rules/common.smk)


rule all:
    input:
        L.summary(),
        L.stats("comparisons"),
        PLOTS,
        INSPECT_LOGS if config["inspect"]["export"] else [],
    default_target: True
