#!/usr/bin/env bash
# Single-node SLURM cluster on this machine, for trying `snakemake --profile slurm` (root; Debian/Ubuntu).
#   scripts/slurm_cluster.sh start     install packages if missing, write configs, start the daemons
#   scripts/slurm_cluster.sh status    pids of munged, mariadbd, slurmdbd, slurmctld, slurmd + node state
#   scripts/slurm_cluster.sh stop      stop them by pid (harmless when already stopped)
#   scripts/slurm_cluster.sh env       print `export SLURM_CONF=...` for the client commands
# State (configs, pids, logs, spool, database) lives in $DOCTUNE_SLURM_DIR (default /tmp/doctune-slurm).
# Other settings: DOCTUNE_SLURM_PARTITION (debug), DOCTUNE_SLURM_ACCOUNT (doctune),
# DOCTUNE_SLURM_GPUS (1), DOCTUNE_SLURM_GPU_TYPE (fake). The logic is in harness/slurm.py.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$(command -v python3 || command -v python)}"
PYTHONPATH="$repo/src:$repo${PYTHONPATH:+:$PYTHONPATH}" exec "$py" -m harness.slurm "$@"
