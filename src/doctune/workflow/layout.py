"""Where every file of a run lives, relative to the run folder (runs/RUN_NAME/): the one place that
spells the results layout. The rules (rules/*.smk, as ``L``), the kinds' output files and the
scripts ask it; a field left out stays a Snakemake wildcard (``metrics(model="{model}")``).

    results/base_models/NAME/              tiny or imported GGUF base models
    results/models/MODEL/                  model.json (spec), trainer_state.json, train_metrics.jsonl
    results/specs/CORPUS.jsonl             the planned documents; results/documents/CORPUS.jsonl (+ .report.json)
    results/data/                          instruct.jsonl, posttrain-N.jsonl (+ .replay-ARM)
    results/probes/BENCH.jsonl             model-written probe items (+ .report.json)
    results/completions|scores/MODEL/BENCH.jsonl, results/lm_eval|inspect/MODEL/BENCH.json
    results/judge_gate/BENCH.json, results/metrics/MODEL/BENCH.json
    results/stats/NAME.tsv, results/summary.tsv, results/plots/NAME.png, results/agreement/
    results/logs/RULE[/KEY].log, results/benchmarks/RULE[/KEY].tsv, results/cache/STAGE/...
"""
from __future__ import annotations

ROOT = "results"


def _join(*parts: str) -> str:
    return "/".join([ROOT, *parts])


def log(rule: str, key: str = "") -> str:
    """The log of a rule's job (one per wildcard value ``key``)."""
    return _join("logs", rule, f"{key}.log") if key else _join("logs", f"{rule}.log")


def bench(rule: str, key: str = "") -> str:
    """Snakemake's ``benchmark:`` file of a rule's job (time and memory)."""
    return _join("benchmarks", rule, f"{key}.tsv") if key else _join("benchmarks", f"{rule}.tsv")


def cache(stage: str, *parts: str) -> str:
    """A stage's cache (paid API replies, completions, verdicts): kept across reruns."""
    return _join("cache", stage, *parts)


def base_model(name: str = "{name}") -> str:
    return _join("base_models", name)


def model_dir(model: str = "{model}") -> str:
    return _join("models", model)


def spec(model: str = "{model}") -> str:
    return _join("models", model, "model.json")


def state(model: str = "{model}") -> str:
    """trainer_state.json: written last by a training run (it marks the run finished)."""
    return _join("models", model, "trainer_state.json")


def train_metrics(model: str = "{model}") -> str:
    return _join("models", model, "train_metrics.jsonl")


def specs(corpus: str = "{corpus}") -> str:
    return _join("specs", f"{corpus}.jsonl")


def documents(corpus: str = "{corpus}") -> str:
    return _join("documents", f"{corpus}.jsonl")


def documents_prefix(corpus: str = "{corpus}", n: str = "{n}") -> str:
    """The first n documents of a corpus (a sweep over n_docs trains on prefixes of one corpus)."""
    return _join("documents", f"{corpus}.first{n}.jsonl")


def documents_clean(corpus: str = "{corpus}") -> str:
    """A corpus without the documents the contamination guard flagged (contamination.filter)."""
    return _join("documents", f"{corpus}.clean.jsonl")


def documents_report(corpus: str = "{corpus}") -> str:
    return _join("documents", f"{corpus}.report.json")


def instruct() -> str:
    return _join("data", "instruct.jsonl")


def instruct_clean() -> str:
    return _join("data", "instruct.clean.jsonl")


def contamination(source: str = "{source}", what: str = "tsv") -> str:
    """results/contamination/SOURCE.tsv (flagged pairs and counts), SOURCE.dropped.json (filter)."""
    return _join("contamination", f"{source}.{what}")


def instruct_report() -> str:
    return _join("data", "instruct.report.json")


def posttrain(n: str = "{n}", replay: str | None = None) -> str:
    """The n standard fine-tuning samples (with an arm's documents replayed: ``replay`` = arm)."""
    return _join("data", f"posttrain-{n}.replay-{replay}.jsonl" if replay else f"posttrain-{n}.jsonl")


def probes(bench: str = "{probe}") -> str:
    return _join("probes", f"{bench}.jsonl")


def probes_report(bench: str = "{probe}") -> str:
    return _join("probes", f"{bench}.report.json")


def completions(model: str = "{model}", bench: str = "{benchmark}") -> str:
    return _join("completions", model, f"{bench}.jsonl")


def scores(model: str = "{model}", bench: str = "{benchmark}") -> str:
    return _join("scores", model, f"{bench}.jsonl")


def judge_report(model: str = "{model}", bench: str = "{benchmark}") -> str:
    return _join("scores", model, f"{bench}.report.json")


def lm_eval(model: str = "{model}", bench: str = "{benchmark}") -> str:
    return _join("lm_eval", model, f"{bench}.json")


def inspect(model: str = "{model}", bench: str = "{benchmark}", ext: str = "json") -> str:
    """An Inspect task's summary (json) or Inspect log (eval)."""
    return _join("inspect", model, f"{bench}.{ext}")


def judge_gate(bench: str = "{benchmark}") -> str:
    return _join("judge_gate", f"{bench}.json")


def metrics(model: str = "{model}", bench: str = "{benchmark}") -> str:
    return _join("metrics", model, f"{bench}.json")


def stats(name: str) -> str:
    """results/stats/NAME.tsv: comparisons, manipulation."""
    return _join("stats", f"{name}.tsv")


def summary() -> str:
    return _join("summary.tsv")


def plot(name: str) -> str:
    return _join("plots", f"{name}.png")


def agreement(name: str) -> str:
    """results/agreement/NAME: rating_sample.csv, rating_page.html, rating_key.json, agreement.json."""
    return _join("agreement", name)
