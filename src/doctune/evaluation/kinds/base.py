"""The interface every benchmark kind implements (see ``doctune.evaluation.kinds``).

A kind is one folder holding one ``BenchmarkKind`` subclass instance (``KIND``), its own config
keys (schema.yaml) and its prompt templates (prompts/). It owns everything specific to its
benchmark family: reading its data in every published layout, the units a judge must decide, the
judge prompt and the verdict parser, its metrics, how it is shown (``display_name``,
``metric_labels``, ``per_dimension``, ``rating_criteria``) and its preflight checks. The judge,
the metrics, plots, agreement, preflight and the Snakefile call only the methods below and never
branch on a kind's name.

Stages (``kind.stage``) say which rule produces a benchmark's scores:

* ``"judge"``: rule ``completions`` samples answers to ``kind.prompts(cfg)``, rule ``judge`` asks
  each judge about every unit of ``kind.units(...)`` and writes one score line per unit to
  ``results/scores/{model}/{benchmark}.jsonl``;
* ``"logprob"``: rule ``score_logprob`` runs ``kind.run(spec, cfg, out)`` and writes one line per
  item to ``results/scores/{model}/{benchmark}.jsonl``;
* ``"lm_eval"``: rule ``lm_eval`` runs ``kind.run(spec, cfg, out, cache_dir=...)`` and writes
  ``results/lm_eval/{model}/{benchmark}.json``;
* ``"inspect"``: rule ``inspect_task`` runs the Inspect task on the model.

Rule ``metrics`` then calls ``kind.metrics(kind.read_scores(path), cfg, n_bootstrap, seed)``, and
for the completeness audit ``kind.plan(cfg, scores, epochs)`` (the units the run planned, from the
config and the data) and ``kind.scored_units(scores, cfg)`` (those that got a usable score).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...workflow.config import did_you_mean  # noqa: F401  (re-exported for the kinds)
from ...io import DataError, read_jsonl

STAGES = ("judge", "logprob", "lm_eval", "inspect")
_URL_PREFIXES = ("http://", "https://", "hf://", "s3://", "gs://")


@dataclass
class Dataset:
    """What ``kind.load`` returns: the items in a stable order and kind-specific information
    (AHB dimensions, dropped questions, ...). Each item has at least ``"id"`` (a string)."""

    items: list[dict]
    info: dict = field(default_factory=dict)

    def by_id(self) -> dict[str, dict]:
        return {it["id"]: it for it in self.items}


@dataclass
class Verdict:
    """A parsed judge reply: ``score`` (None = no usable grade) and the parsed ``fields``
    (rubric fields, or None); ``unparseable`` marks a reply that had no parseable grade."""

    score: float | int | None
    fields: dict | None = None
    unparseable: bool = False


def is_url(path: str | None) -> bool:
    return bool(path) and str(path).lower().startswith(_URL_PREFIXES)


class BenchmarkKind:
    """Base class. Subclasses set the class attributes and override what they need."""

    #: the ``kind:`` value in the config
    name: str = ""
    #: which rule produces the scores: "judge", "logprob" or "lm_eval"
    stage: str = "judge"
    #: metric reported as primary unless the benchmark config sets ``primary_metric``
    primary_metric: str = ""
    #: metrics every metrics file of this kind holds (null when they could not be computed)
    metric_names: tuple[str, ...] = ()
    #: judged kinds: the judge formats ``prompt``/``parse`` understand, first = default
    formats: tuple[str, ...] = ()
    #: judged kinds, logprob judges: {field: allowed labels}; None = one binary label "0"/"1"
    logprob_fields: dict[str, tuple[str, ...]] | None = None
    #: judged kinds: the formats a log-probability judge can read (first = default)
    logprob_formats: tuple[str, ...] = ("label",)
    #: one-line description (documentation, error messages)
    description: str = ""
    #: the per-item metric the manipulation check compares when a benchmark of this kind names a
    #: ``corpus`` (doctune.analysis.manipulation); None: the kind measures no corpus's content
    manipulation_metric: str | None = None
    #: display metadata: the family's name for people, labels of its metrics, and whether its
    #: metrics files hold per-dimension metrics ("dimension:NAME", drawn as profiles)
    display_name: str = ""
    metric_labels: dict[str, str] = {}
    per_dimension: bool = False

    # ------------------------------------------------------------------ display and checks
    def folder(self) -> Path:
        """The kind's folder (schema.yaml, prompts/)."""
        import sys

        return Path(sys.modules[type(self).__module__].__file__).resolve().parent

    def prompt_files(self) -> list[str]:
        """The prompt templates the kind uses (its folder's prompts/, and those of the kinds it
        builds on): inputs of the rules that judge it, so editing one reruns them."""
        import sys

        out: list[str] = []
        for cls in type(self).__mro__:
            mod = sys.modules.get(cls.__module__)
            if not (isinstance(cls, type) and issubclass(cls, BenchmarkKind)) or cls is BenchmarkKind or mod is None:
                continue
            d = Path(mod.__file__).resolve().parent / "prompts"
            out += [str(p) for p in sorted(d.glob("*.txt"))] if d.is_dir() else []
        return sorted(set(out))

    def rating_criteria(self, bench_cfg: dict) -> dict[str, str] | None:
        """For the rating page people fill in: {dimension: what to check}; None = the kind has no
        per-dimension criteria."""
        return None

    def reference_problems(self, bench_cfg: dict, name: str) -> list[str]:
        """Cheap config checks that need no data (run with the schema, also inside jobs)."""
        return []

    def hub_datasets(self, bench_cfg: dict) -> list[dict]:
        """The HuggingFace datasets the benchmark reads ({"dataset", "revision", ...}), for preflight's
        hub check (default: its source when it names a dataset and no local path)."""
        src = bench_cfg.get("source") or {}
        return [src] if src.get("dataset") and not src.get("path") else []

    def preflight_warnings(self, bench_cfg: dict, env: dict) -> list[tuple[str, str]]:
        """(config key under the benchmark, message) for things that will not stop the run but may
        make the benchmark missing (e.g. data only reachable on the hub while offline)."""
        return []

    # ------------------------------------------------------------------ files and checks
    def output_file(self, model: str, benchmark: str) -> str:
        """The file its stage writes and rule metrics reads."""
        from ...workflow import layout

        return layout.lm_eval(model, benchmark) if self.stage == "lm_eval" else layout.scores(model, benchmark)

    def data_files(self, bench_cfg: dict) -> list[str]:
        """Local files or folders the benchmark reads (Snakemake inputs: editing them reruns)."""
        out = []
        src = bench_cfg.get("source") or {}
        for p in (src.get("path"), src.get("questions_file"), src.get("dimensions_file"),
                  bench_cfg.get("local_file")):
            if p and not is_url(p) and p not in out:
                out.append(p)
        return out

    def check(self, bench_cfg: dict) -> list[str]:
        """Cheap validation of the benchmark's config and local data files, without loading
        models or fetching datasets: one line per problem naming the file and line, or the
        config key, with a 'did you mean' for close names. [] = nothing wrong found."""
        return []

    # ------------------------------------------------------------------ data
    def load(self, bench_cfg: dict) -> Dataset:
        raise NotImplementedError(f"benchmark kind {self.name!r} has no loader")

    def item_texts(self, bench_cfg: dict) -> list[tuple[str, str]]:
        """(item id, text) of each item, for the contamination guard (doctune.data.contamination):
        what a model is asked. Default: the loaded items' ``prompt`` (or ``question``). Raises when
        the items cannot be read (the guard reports it)."""
        out = []
        for it in self.load(bench_cfg).items:
            text = it.get("prompt") or it.get("question")
            if text:
                out.append((str(it.get("id")), str(text)))
        return out

    def prompts(self, bench_cfg: dict) -> list[dict]:
        """Judged kinds: what the evaluated model answers, ``[{"id", "prompt", ...}]``."""
        raise ValueError(f"benchmark kind {self.name!r} has no prompts to generate "
                         f"(its scores come from stage {self.stage!r})")

    # ------------------------------------------------------------------ judging (stage "judge")
    def default_format(self, bench_cfg: dict) -> str:
        fmt = bench_cfg.get("judge_format") or (self.formats[0] if self.formats else None)
        if fmt not in self.formats:
            raise ValueError(f"benchmark kind {self.name!r}: judge_format {fmt!r} is not one of "
                             f"{list(self.formats)}")
        return fmt

    def units(self, data: Dataset, completions: list[dict], bench_cfg: dict) -> list[dict]:
        """Judge tasks for the completion rows (``{"id", "epoch", "prompt", "completion",
        "_line"}``): each ``{"unit_id", "item_id", "epoch", "dimension", "combination",
        "weight", "missing_completion", ...}`` plus whatever ``prompt`` needs."""
        raise NotImplementedError

    def prompt(self, unit: dict, fmt: str, field: str | None = None) -> str:
        """The judge's user message for a unit in judge format ``fmt``; in format "label"
        (log-probability judges) ``field`` names the rubric field asked (None = binary)."""
        raise NotImplementedError

    def system_prompt(self, unit: dict, fmt: str) -> str | None:
        """A system message sent before ``prompt`` (None = none)."""
        return None

    def response_schema(self, fmt: str) -> dict | None:
        """A JSON schema for structured output in format ``fmt`` (None = free text)."""
        return None

    def parse(self, reply: str | None, fmt: str) -> Verdict:
        raise NotImplementedError

    def label_options(self, fmt: str, field: str | None = None) -> tuple[tuple[str, int], ...]:
        """Log-probability judges: the labels scored for ``field`` in format ``fmt``, each with the
        value it stands for, as ``((label, value), ...)``."""
        if fmt != "label":
            raise ValueError(f"benchmark kind {self.name!r}: format {fmt!r} has no log-probability labels")
        labels = ("0", "1") if self.logprob_fields is None else self.logprob_fields[field]
        return tuple((lab, int(lab)) for lab in labels)

    def from_labels(self, labels: dict[str | None, int | None]) -> Verdict:
        """A verdict from the argmax labels of a log-probability judge ({field: label})."""
        if self.logprob_fields is None:
            v = labels.get(None)
            return Verdict(score=v, fields=None, unparseable=v is None)
        if any(labels.get(f) is None for f in self.logprob_fields):
            return Verdict(score=None, fields=None, unparseable=True)
        return self.verdict_from_fields({f: labels[f] for f in self.logprob_fields})

    def verdict_from_fields(self, fields: dict) -> Verdict:  # pragma: no cover - rubric kinds
        raise NotImplementedError

    def gate_value(self, verdict: dict) -> int | None:
        """The judge gate's 0/1 reading of a verdict (``{"score", "fields", ...}`` as the judge
        returns it): 1 when the verdict is the benchmark's high one (score >= 0.5); None = no verdict."""
        s = verdict.get("score")
        return None if s is None else int(float(s) >= 0.5)

    def unit_extra(self, unit: dict) -> dict:
        """Extra fields a score line of this unit carries (beside the common ones)."""
        return {}

    # ------------------------------------------------------------------ other stages
    def run(self, spec: dict, bench_cfg: dict, out: str, **kw: Any) -> Any:
        raise NotImplementedError(f"benchmark kind {self.name!r} is scored by stage {self.stage!r}")

    # ------------------------------------------------------------------ metrics
    def read_scores(self, path: str) -> Any:
        p = Path(path)
        if not p.exists():
            raise DataError(f"scores file {p} does not exist")
        return read_jsonl(p)

    def metrics(self, scores: Any, bench_cfg: dict, n_bootstrap: int, seed: int) -> tuple[dict, dict, dict]:
        """``(metrics, items, extra)``: ``metrics`` {name: {"value", "ci_low", "ci_high", "n",
        "n_missing", ...}} holding at least ``metric_names``; ``items`` {metric: {item id: score}}
        (per-item scores for paired tests); ``extra`` further top-level fields of the metrics
        file (a ``"reason"`` there marks the benchmark missing)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ completeness
    def plan(self, bench_cfg: dict, scores: Any, epochs: int = 1) -> dict:
        """What the run planned to score for one model on this benchmark, from the config and the
        benchmark's data (never from the scores of a judged or log-prob kind, which may have lost
        lines): ``{"n_planned": int | None, "unit": what one unit is, ...the factors}``;
        ``n_planned`` None = the plan cannot be known here. ``epochs`` is the run's completions
        per item for this benchmark (judged kinds).

        Defaults by stage: judged kinds count the units of ``self.units`` for every item x epoch,
        times the judges (``bench_cfg["judges"]``; without them, the judges in the scores);
        log-prob kinds count the loaded items. Kinds with cheaper or other counts override it."""
        if self.stage == "judge":
            data = self.load(bench_cfg)
            rows = [{"id": it["id"], "epoch": e, "prompt": None, "completion": "", "_line": 0}
                    for it in data.items for e in range(int(epochs))]
            per = len(self.units(data, rows, bench_cfg))
            judges = plan_judges(bench_cfg, scores)
            return {"n_planned": per * judges, "unit": "judge verdicts (units x epochs x judges)",
                    "items": len(data.items), "epochs": int(epochs), "judges": judges}
        if self.stage == "logprob":
            return {"n_planned": len(self.load(bench_cfg).items), "unit": "items"}
        return {"n_planned": None, "unit": "units"}

    def scored_units(self, scores: Any, bench_cfg: dict) -> int | None:
        """Units of the plan that got a usable score in ``scores`` (what ``read_scores`` returned).
        Defaults: judged kinds, distinct units with a non-null verdict; log-prob kinds, distinct
        items with a score line. None = cannot be told."""
        if not isinstance(scores, list):
            return None
        rows = [r for r in scores if isinstance(r, dict) and r.get("status") != "missing"]
        if self.stage == "judge":
            return len({unit_key(r) for r in rows if r.get("score") is not None})
        return len({str(r.get("item_id")) for r in rows if "item_id" in r})


def unit_key(row: dict) -> Any:
    """A judged score line's identity (its ``unit_id``, else its coordinates)."""
    if row.get("unit_id") is not None:
        return str(row["unit_id"])
    return (str(row.get("item_id")), row.get("epoch"), row.get("dimension"),
            row.get("vset", row.get("combination")), row.get("judge"))


def plan_judges(bench_cfg: dict, scores: Any) -> int:
    """The judges a judged benchmark planned: its config's ``judges``; without them (a config
    outside the pipeline), the judges its score lines name; at least 1."""
    if bench_cfg.get("judges"):
        return len(bench_cfg["judges"])
    seen = {r.get("judge") for r in scores or [] if isinstance(r, dict) and r.get("judge") is not None}
    return max(1, len(seen))
