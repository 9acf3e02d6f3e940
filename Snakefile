# doctune: document-tuning research pipeline. See README.md.
#   snakemake results/summary.tsv -c4                      # paper config (config/config.yaml)
#   snakemake results/summary.tsv -c2 --configfile config/demo.yaml   # offline demo
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from doctune.config import validate_config

# config/config.yaml (the paper) is the default; a --configfile on the command line replaces it
# rather than being merged into it, so the demo never inherits the paper's arms.
if not workflow.config_settings.configfiles:

    configfile: "config/config.yaml"


# Validate before any job starts: a wrong key or value stops here, naming the key.
config.update(validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml"))


include: "rules/common.smk"
include: "rules/documents.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/inspect.smk"
include: "rules/stats.smk"


rule all:
    input:
        "results/summary.tsv",
        "results/stats/comparisons.tsv",
        PLOTS,
        INSPECT_LOGS if config["inspect"]["export"] else [],
    default_target: True


onstart:
    # A missing API key is one clear error before any job runs (never a failure mid-run).
    from doctune.llm.gemini import check_api_key

    for section in ("generators", "judges"):
        for entry in (config.get(section) or {}).values():
            if entry.get("backend") == "gemini":
                check_api_key(entry)
