"""What a config will cost and what it can detect, before anything is paid: ``doctune plan CONFIG
[--pilot runs/NAME]`` and the end of every dry run (``snakemake -n``).

Three parts, each number printed with where it comes from (the config, a local file, a pilot's
measurement, or an assumption: a ``plan.*`` key of config/schema.yaml):

* **API**: requests, tokens and cost at the config's prices for every stage that calls a model
  through an API: documents (each corpus), instruction data, model-written probes, judge calls
  (models x judged units x epochs x judges) and the judge gate. Unknown prices make the cost
  *missing*, never 0.
* **GPU-hours**: training (tokens per arm / throughput), post-training, evaluation (completions,
  log-likelihood scoring, local judges) and local generators.
* **Power**: for every primary comparison (``stats.comparisons`` and the manipulation check's
  pairs) the minimum detectable difference (MDE) at ``stats.alpha`` and ``plan.power``, paired,
  from the t distribution: ``MDE = (t_{1-alpha/2, I-1} + t_{power, I-1}) x SD_d / sqrt(n)`` with
  ``n = items x epochs x seeds`` (units independent), beside the bound where epochs and seeds add
  nothing (``n = items``).

The formulas and every assumption are in docs/PLAN.md. This module imports nothing heavy at the
top: the Snakefile imports it in every run and computes the plan only at the end of a dry run.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

#: prompts rendered to measure a stage's mean prompt length (the first ones: the grid walks evenly)
PROMPT_SAMPLE = 1000
#: completion lines read per pilot file to measure answer lengths
PILOT_LINES = 2000


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------

def _t_cdf_upper_half(x: float, df: float) -> float:
    """P(0 < T < x) for Student's t, x >= 0: Simpson's rule on the density (accurate to ~1e-9
    here; scipy is not imported, so a dry run stays fast)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    steps = 2000
    h = x / steps
    total = 0.0
    for i in range(steps + 1):
        w = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += w * (1 + (i * h) ** 2 / df) ** (-(df + 1) / 2)
    return c * total * h / 3


@lru_cache(maxsize=None)
def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with df degrees of freedom (the normal's for df = inf or
    above 1e6), by Newton's method on the CDF from the normal quantile."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(p)
    if math.isinf(df) or df > 1e6:
        return z
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1 - p, df)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x = max(z, 1e-6)
    for _ in range(100):
        f = 0.5 + _t_cdf_upper_half(x, df) - p
        step = f / (c * (1 + x * x / df) ** (-(df + 1) / 2))
        x = max(x - step, x / 2)
        if abs(step) < 1e-10 * max(1.0, x):
            break
    return x


def mde(sd: float | None, n: float, items: int, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The minimum detectable difference of a two-sided paired test: (t_{1-alpha/2, df} +
    t_{power, df}) x sd / sqrt(n), df = items - 1 (the comparisons test per-item scores). None
    when it cannot be computed (no SD, fewer than 2 items)."""
    if sd is None or items is None or items < 2 or n is None or n < 2:
        return None
    df = items - 1
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * sd / math.sqrt(n)


def sd(xs: list[float]) -> float | None:
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    if len(xs) < 3:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


# ----------------------------------------------------------------------------------------------
# A pilot run's measurements
# ----------------------------------------------------------------------------------------------

def _read_json(p: Path) -> Any:
    import json

    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _jsonl(p: Path, limit: int | None = None) -> list[dict]:
    import json

    out: list[dict] = []
    try:
        with p.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if limit is not None and len(out) >= limit:
                    break
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    out.append(row)
    except OSError:
        pass
    return out


def _median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None and math.isfinite(x))
    if not xs:
        return None
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else (xs[mid - 1] + xs[mid]) / 2


class Pilot:
    """What a finished (or partial) run measured: ``runs/NAME`` (or its results/ folder)."""

    def __init__(self, path: str | Path):
        p = Path(path)
        self.path = p
        self.results = p if p.name == "results" else p / "results"
        if not self.results.is_dir():
            raise FileNotFoundError(f"{p}: no results/ folder (give a run folder such as runs/demo)")
        self.name = str(p)

    # -- training ---------------------------------------------------------------------------
    def train_tokens_per_s(self) -> tuple[float, str] | None:
        per_file = []
        for f in sorted((self.results / "models").glob("*/train_metrics.jsonl")):
            m = _median([float(r["tokens_per_s"]) for r in _jsonl(f) if isinstance(r.get("tokens_per_s"), (int, float))])
            if m:
                per_file.append(m)
        if not per_file:
            return None
        return _median(per_file), (f"measured: pilot {self.name}, median tokens_per_s of "
                                   f"{len(per_file)} train_metrics.jsonl")

    # -- API stages ---------------------------------------------------------------------------
    def generation_report(self, rel: str, generator: dict) -> dict | None:
        """Per-request tokens and the regeneration rate of a documents / instruct / probes report
        made by the same generator (backend and model); None otherwise."""
        rep = _read_json(self.results / rel)
        if not isinstance(rep, dict):
            return None
        g = rep.get("generator") or {}
        if g and (g.get("backend") != generator.get("backend") or g.get("model") != generator.get("model")):
            return None
        api = rep.get("api") or {}
        sent = api.get("requests_sent") or rep.get("requests")
        requested = rep.get("requested")
        if not sent or rep.get("tokens_in") is None or rep.get("tokens_out") is None or not requested:
            return None
        return {"tokens_in": rep["tokens_in"] / sent, "tokens_out": rep["tokens_out"] / sent,
                "regeneration_rate": (rep.get("regenerations") or 0) / requested,
                "source": f"measured: pilot {self.name}/results/{rel} ({sent} requests)"}

    def judge_tokens(self) -> dict | None:
        """Mean tokens per judge reply over the pilot's API judge ledgers (results/cache/judge)."""
        n = tin = tout = 0
        for f in sorted((self.results / "cache" / "judge").rglob("*.ledger.jsonl")):
            for ev in _jsonl(f):
                if ev.get("ev") == "reply" and ev.get("kind") == "ok":
                    n += 1
                    tin += int(ev.get("in") or 0)
                    tout += int(ev.get("out") or 0)
        if not n:
            return None
        return {"tokens_in": tin / n, "tokens_out": tout / n,
                "source": f"measured: pilot {self.name}, {n} judge replies in results/cache/judge/*.ledger.jsonl"}

    def answer_tokens(self, benchmark: str, chars_per_token: float) -> tuple[float, str] | None:
        lens = []
        for f in sorted((self.results / "completions").glob(f"*/{benchmark}.jsonl")):
            lens += [len(r["completion"]) for r in _jsonl(f, PILOT_LINES) if isinstance(r.get("completion"), str)]
        if not lens:
            return None
        return (sum(lens) / len(lens) / chars_per_token,
                f"measured: pilot {self.name}, {len(lens)} completions of {benchmark} / chars_per_token")

    # -- evaluation throughput ----------------------------------------------------------------
    def _job_seconds(self, rule: str) -> dict[str, float]:
        out = {}
        for f in sorted((self.results / "benchmarks" / rule).glob("*.tsv")):
            rows = [ln.split("\t") for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if len(rows) >= 2:
                try:
                    out[f.stem] = float(rows[-1][rows[0].index("s")])
                except (ValueError, IndexError):
                    continue
        return out

    def _stage_of(self, metrics_file: Path) -> str | None:
        from ..evaluation.kinds import get_kind

        d = _read_json(metrics_file)
        try:
            return get_kind(d.get("kind")).stage if isinstance(d, dict) else None
        except ValueError:
            return None

    def seconds_per_unit(self, rule: str) -> tuple[float, str] | None:
        """Job seconds (results/benchmarks/RULE/MODEL.tsv) over the units those jobs did:
        completions (lines), score_logprob and lm_eval (scored items), judge (verdicts)."""
        secs = self._job_seconds(rule)
        total_s = units = 0.0
        for model, s in secs.items():
            n = 0
            if rule == "completions":
                n = sum(len(_jsonl(f)) for f in (self.results / "completions" / model).glob("*.jsonl"))
            elif rule in ("score_logprob", "lm_eval", "judge"):
                want = {"score_logprob": "logprob", "lm_eval": "lm_eval", "judge": "judge"}[rule]
                for mf in (self.results / "metrics" / model).glob("*.json"):
                    if self._stage_of(mf) != want:
                        continue
                    if rule == "judge":
                        n += len(_jsonl(self.results / "scores" / model / f"{mf.stem}.jsonl"))
                    else:
                        d = _read_json(mf) or {}
                        items = (d.get("items") or {}).get(d.get("primary_metric")) or {}
                        n += len(items)
            if n:
                total_s += s
                units += n
        if not units:
            return None
        what = {"completions": "completion", "score_logprob": "item", "lm_eval": "document", "judge": "verdict"}[rule]
        return total_s / units, (f"measured: pilot {self.name}, {total_s:.0f} job-s of rule {rule} over "
                                 f"{units:.0f} {what}s")

    # -- per-item scores ------------------------------------------------------------------------
    def item_sd(self, a: str, b: str, benchmark: str, metric: str) -> dict | None:
        """SD of the per-item differences a - b in the pilot's metrics files, with the epochs and
        seeds behind each per-item score."""
        da = _read_json(self.results / "metrics" / a / f"{benchmark}.json")
        db = _read_json(self.results / "metrics" / b / f"{benchmark}.json")
        if not isinstance(da, dict) or not isinstance(db, dict):
            return None
        ia, ib = (da.get("items") or {}).get(metric) or {}, (db.get("items") or {}).get(metric) or {}
        shared = [k for k in ia if k in ib and ia[k] is not None and ib[k] is not None]
        s = sd([float(ia[k]) - float(ib[k]) for k in shared])
        if s is None:
            return None

        def epochs(d: dict) -> int:
            plan = d.get("plan") if isinstance(d.get("plan"), dict) else {}
            if isinstance(plan.get("epochs"), int):
                return max(1, plan["epochs"])
            n_items = len((d.get("items") or {}).get(d.get("primary_metric")) or {}) or len(ia)
            done = (d.get("completions") or {}).get("n")
            return max(1, round(done / n_items)) if isinstance(done, int) and n_items else 1

        return {"sd_items": s, "n": len(shared), "epochs": min(epochs(da), epochs(db)),
                "seeds": min(int(da.get("n_seeds") or 1), int(db.get("n_seeds") or 1)),
                "source": f"measured: pilot {self.name}, {len(shared)} items of {a} - {b}"}


# ----------------------------------------------------------------------------------------------
# The plan
# ----------------------------------------------------------------------------------------------

class _Plan:
    def __init__(self, cfg: dict, pilot: Pilot | None):
        from .config import schema_defaults

        self.cfg = cfg
        self.pilot = pilot
        self.p = {**schema_defaults("properties", "plan"), **(cfg.get("plan") or {})}
        self.sd_defaults = schema_defaults("properties", "plan")["sd"]
        self.api: list[dict] = []
        self.gpu: list[dict] = []
        self.power: list[dict] = []
        self.notes: list[str] = []
        self._bench: dict[str, dict] = {}
        self._doc_tokens: dict[str, tuple[float, str]] = {}   # corpus -> (tokens per document, where from)

    # -- helpers ----------------------------------------------------------------------------
    def _info(self, entry: dict):
        from ..llm.registry import backend_info

        return backend_info(entry.get("backend"))

    def _cost(self, entry: dict, tin: float, tout: float) -> float | None:
        """USD at the entry's prices; 0 for a local model; None (missing) for an unpriced API."""
        from ..llm.cache import api_cost

        return api_cost(entry, tin, tout) if self._info(entry).api else 0.0

    def _api_row(self, stage: str, what: str, entry: dict, entry_key: str, n_items: float, rate: float,
                 max_attempts: int | None, tin: float, tout: float, notes: list[str],
                 requests_per_item: int = 1, local_time: bool = True) -> dict:
        """One API table row; a local backend's generation time also goes in the GPU table
        (``local_time``; a local judge's time is counted with the evaluation instead)."""
        info = self._info(entry)
        req = n_items * (1 + rate) * requests_per_item
        row = {"stage": stage, "what": what, "backend": entry.get("backend"), "model": entry.get("model"),
               "api": info.api, "requests": req, "tokens_in": req * tin, "tokens_out": req * tout,
               "tokens_in_per_request": tin, "tokens_out_per_request": tout, "notes": notes}
        row["cost_usd"] = self._cost(entry, row["tokens_in"], row["tokens_out"])
        if max_attempts:
            mx = n_items * max_attempts * requests_per_item
            row["requests_max"] = mx
            row["cost_max_usd"] = self._cost(entry, mx * tin, mx * int(entry.get("max_new_tokens") or tout))
        if info.api and row["cost_usd"] is None:
            row["notes"] = notes + [f"cost missing: {entry_key} has no price_in_per_mtok/price_out_per_mtok"]
        self.api.append(row)
        if info.local and local_time:
            self._gpu_generate(stage, what, req * tout, int((entry.get("resources") or {}).get("gpu", 0)))
        return row

    def _rate(self, measured: dict | None) -> tuple[float, str]:
        if measured is not None:
            return measured["regeneration_rate"], measured["source"]
        return float(self.p["regeneration_rate"]), "assumed: plan.regeneration_rate"

    def _gpu_row(self, stage: str, what: str, work: str, seconds: float | None, rate_note: str, gpus: int) -> None:
        self.gpu.append({"stage": stage, "what": what, "work": work, "job_hours": None if seconds is None else seconds / 3600,
                         "gpus": gpus, "gpu_hours": None if seconds is None else seconds / 3600 * gpus,
                         "rate": rate_note})

    def _gpu_generate(self, stage: str, what: str, tokens: float, gpus: int) -> None:
        tps = float(self.p["generate_tokens_per_s"])
        self._gpu_row(stage, what, f"{_n(tokens)} new tokens", tokens / tps,
                      f"{tps:g} tokens/s (assumed: plan.generate_tokens_per_s)", gpus)

    # -- documents --------------------------------------------------------------------------
    def documents(self) -> None:
        from ..documents.corpus import apply_run_settings, load_corpus_def
        from ..documents.specs import make_specs

        cfg, p = self.cfg, self.p
        val = cfg.get("validation") or {}
        res = cfg.get("resources_dir", "resources")
        for corpus, c in (cfg.get("corpora") or {}).items():
            gen = cfg["generators"][c["generator"]]
            info = self._info(gen)
            if info.source:
                self.api.append({"stage": "documents", "what": f"{corpus}: read from a file", "api": False,
                                 "requests": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0, "notes": []})
                continue
            cdef = apply_run_settings(load_corpus_def(res, corpus, c.get("definition")), c)
            k = min(int(c["n"]), PROMPT_SAMPLE)
            specs = make_specs(corpus, k, int(c.get("seed", 0)), res, cdef)
            chars = sum(len(s["prompt"]) for s in specs) / max(1, len(specs))
            measured = self.pilot.generation_report(f"documents/{corpus}.report.json", gen) if self.pilot else None
            rate, rate_src = self._rate(measured)
            if measured is not None:
                tin, tout = measured["tokens_in"], measured["tokens_out"]
                notes = [f"tokens per request {tin:.0f} in, {tout:.0f} out ({measured['source']})"]
            else:
                cap = int(gen.get("max_new_tokens") or 4096)
                words = min(max(int(cdef["target_words"]), int(val.get("min_words", 0))), int(val.get("max_words", 10 ** 9)))
                tin = chars / float(p["chars_per_token"])
                tout = min(words * float(p["tokens_per_word"]), cap)
                notes = [f"prompt {tin:.0f} tokens: mean of {len(specs)} rendered spec prompts ({chars:.0f} chars) "
                         f"/ chars_per_token {p['chars_per_token']:g} (assumed)",
                         f"reply {tout:.0f} tokens: target_words {cdef['target_words']} within the validation limits "
                         f"[{val.get('min_words')}, {val.get('max_words')}] x tokens_per_word {p['tokens_per_word']:g} "
                         f"(assumed), at most max_new_tokens {cap}"]
            notes.append(f"validation regeneration allowance {rate:.0%} of {c['n']} documents ({rate_src}); worst "
                         f"case max_attempts {val.get('max_attempts')} per document")
            self._api_row("documents", f"{corpus}: {c['n']} documents", gen, f"generators.{c['generator']}",
                          int(c["n"]), rate, int(val.get("max_attempts", 1)), tin, tout, notes)
            self._doc_tokens[corpus] = (tout, notes[0] if measured is not None else notes[1])

    # -- instruction data -------------------------------------------------------------------
    def instruct(self) -> None:
        cfg, p = self.cfg, self.p
        idata = cfg.get("instruct_data") or {}
        if not any(a.get("method") == "sft" and a.get("data") == "instruct" and not a.get("init_from")
                   for a in cfg["arms"].values()):
            return
        from ..data.instruct import _pair_plan, load_prompts

        gen = cfg["generators"][idata["generator"]]
        _, domains, themes, q_tpl, a_sys = load_prompts(cfg.get("resources_dir", "resources"), idata)
        n = int(idata.get("n", 0))
        plans = [_pair_plan(i, int(idata.get("seed", 0)), themes, domains) for i in range(min(n, PROMPT_SAMPLE))]
        q_chars = sum(len(q_tpl.format(theme=x["theme"], domain=x["domain"])) for x in plans) / max(1, len(plans))
        cpt, tpw = float(p["chars_per_token"]), float(p["tokens_per_word"])
        cap = int(gen.get("max_new_tokens") or 4096)
        q_out = min(int(p["question_words"]) * tpw, cap)
        a_out = min(int(idata.get("answer_words", 250)) * tpw, cap)
        measured = self.pilot.generation_report("data/instruct.report.json", gen) if self.pilot else None
        rate, rate_src = self._rate(measured)
        if idata.get("match_welfare_tokens"):
            max_n = int(idata.get("max_n") or 20 * max(n, 1))
            self.notes.append(f"instruct data: match_welfare_tokens asks for pairs until the welfare tokens match "
                              f"the corpus's; the plan counts the first {n} pairs, at most {max_n}")
        common = [f"regeneration allowance {rate:.0%} ({rate_src}); worst case max_attempts "
                  f"{idata.get('max_attempts')} per request"]
        if measured is not None:
            tin, tout = measured["tokens_in"], measured["tokens_out"]
            self._api_row("instruct data", f"{n} pairs: question + answer", gen, f"generators.{idata['generator']}",
                          n, rate, int(idata.get("max_attempts", 1)), tin, tout,
                          [f"tokens per request {tin:.0f} in, {tout:.0f} out ({measured['source']})"] + common,
                          requests_per_item=2)
            return
        self._api_row("instruct data", f"{n} questions", gen, f"generators.{idata['generator']}", n, rate,
                      int(idata.get("max_attempts", 1)), q_chars / cpt, q_out,
                      [f"prompt: mean of {len(plans)} rendered question prompts / chars_per_token {cpt:g} (assumed)",
                       f"reply: question_words {p['question_words']} x tokens_per_word {tpw:g} (assumed)"] + common)
        self._api_row("instruct data", f"{n} answers", gen, f"generators.{idata['generator']}", n, rate,
                      int(idata.get("max_attempts", 1)), len(a_sys) / cpt + q_out, a_out,
                      [f"prompt: the answer instruction ({len(a_sys)} chars / chars_per_token) + the question",
                       f"reply: instruct_data.answer_words {idata.get('answer_words', 250)} x tokens_per_word {tpw:g} "
                       f"(assumed), at most max_new_tokens {cap}"] + common)

    # -- model-written probes ---------------------------------------------------------------
    def probes(self) -> None:
        cfg, p = self.cfg, self.p
        from ..documents.corpus import apply_run_settings, load_corpus_def, load_grid

        for name, b in cfg["benchmarks"].items():
            w = b.get("write")
            if not w:
                continue
            from ..evaluation.kinds.probe.writing import load_prompt_template, probe_specs, render_request

            gen = cfg["generators"][w["generator"]]
            ccfg = cfg["corpora"][b["corpus"]]
            res = cfg.get("resources_dir", "resources")
            cdef = apply_run_settings(load_corpus_def(res, b["corpus"], ccfg.get("definition")), ccfg)
            tpl = load_prompt_template(w)
            specs = probe_specs(name, load_grid(res, cdef)["domains"], min(int(w["n"]), PROMPT_SAMPLE), w.get("seed", 0))
            chars = sum(len(render_request(tpl, cdef, s["domain"])) for s in specs) / max(1, len(specs))
            measured = self.pilot.generation_report(f"probes/{name}.report.json", gen) if self.pilot else None
            rate, rate_src = self._rate(measured)
            cpt, tpw = float(p["chars_per_token"]), float(p["tokens_per_word"])
            if measured is not None:
                tin, tout = measured["tokens_in"], measured["tokens_out"]
                notes = [f"tokens per request {tin:.0f} in, {tout:.0f} out ({measured['source']})"]
            else:
                tin = chars / cpt
                tout = min(int(p["probe_item_words"]) * tpw, int(gen.get("max_new_tokens") or 4096))
                notes = [f"prompt: mean of {len(specs)} rendered requests / chars_per_token {cpt:g} (assumed)",
                         f"reply: probe_item_words {p['probe_item_words']} x tokens_per_word {tpw:g} (assumed)"]
            notes.append(f"regeneration allowance {rate:.0%} ({rate_src}); worst case max_attempts "
                         f"{w.get('max_attempts', 3)} per item")
            self._api_row("probes", f"{name}: {w['n']} items", gen, f"generators.{w['generator']}", int(w["n"]),
                          rate, int(w.get("max_attempts", 3)), tin, tout, notes)

    # -- benchmark sizes --------------------------------------------------------------------
    def bench(self, name: str) -> dict:
        """items, judged units per item and epoch, epochs, stage, and where the numbers come from."""
        if name in self._bench:
            return self._bench[name]
        from ..evaluation.kinds import get_kind
        from ..evaluation.kinds.base import is_url
        from .config import deep_merge

        cfg, p = self.cfg, self.p
        b = cfg["benchmarks"][name]
        kind = get_kind(b["kind"])
        gen = deep_merge(cfg["evaluation"]["generation"], b.get("generation") or {})
        epochs = int(b.get("epochs") or gen.get("epochs") or 1) if kind.stage in ("judge", "inspect") else 1
        limit = b.get("max_items") or b.get("max_questions")
        over = (p.get("benchmarks") or {}).get(name) or {}
        items = units = None
        source = ""
        files = [f for f in kind.data_files(b) if f != b.get("judge_prompt")]
        local = bool(files) and all(not is_url(f) and Path(f).exists() for f in files)
        if b.get("write"):
            items, units, source = int(b["write"]["n"]), 1.0, f"write.n: {b['write']['n']} items asked for"
        elif local and hasattr(kind, "plan"):
            try:
                got = _quietly(kind.plan, _counting(b), None, 1)
            except Exception as exc:  # noqa: BLE001 - a local file the preflight reports
                got = None
                source = f"(its local data could not be read: {type(exc).__name__})"
            if got and got.get("n_planned") is not None:
                judges = int(got.get("judges") or 1)
                items = int(got.get("items") or got["n_planned"])
                units = (got.get("units_per_epoch") or got["n_planned"] / judges) / max(1, items)
                source = f"counted by kind {b['kind']} in {', '.join(files)}"
        if items is None:
            if over.get("items"):
                items, source = int(over["items"]), f"plan.benchmarks.{name}.items (the config's)"
            else:
                items = int(p["default_items"])
                source = f"assumed: plan.default_items {items} (data not local)" + (f" {source}" if source else "")
            if limit and int(limit) < items:
                items, source = int(limit), source + f", cut at max_items/max_questions {limit}"
        if units is None:
            units = float(over.get("units_per_item") or 1.0)
            if kind.stage == "judge":
                source += (f"; {units:g} judged units per item (plan.benchmarks.{name}.units_per_item)"
                           if over.get("units_per_item") else "; 1 judged unit per item (assumed)")
        out = {"name": name, "kind": b["kind"], "stage": kind.stage, "items": items, "units_per_item": units,
               "epochs": epochs, "source": source, "max_new_tokens": int(gen.get("max_new_tokens") or 512),
               "primary_metric": b.get("primary_metric") or kind.primary_metric}
        self._bench[name] = out
        return out

    # -- judge calls and the judge gate -----------------------------------------------------
    def judging(self) -> None:
        from .config import eval_models

        cfg, p = self.cfg, self.p
        models = eval_models(cfg)
        jt = self.pilot.judge_tokens() if self.pilot else None
        for name, b in cfg["benchmarks"].items():
            bs = self.bench(name)
            if bs["stage"] == "inspect":
                self.notes.append(f"{name} (kind {b['kind']}): Inspect runs it; any grader model it calls is "
                                  f"not counted here")
            if bs["stage"] != "judge":
                continue
            ans = self.pilot.answer_tokens(name, float(p["chars_per_token"])) if self.pilot else None
            a_tok, a_src = (ans if ans else (min(int(p["answer_tokens"]), bs["max_new_tokens"]),
                                             "assumed: plan.answer_tokens"))
            if jt:
                tin, tout = jt["tokens_in"], jt["tokens_out"]
                tok_note = f"tokens per call {tin:.0f} in, {tout:.0f} out ({jt['source']})"
            else:
                tin = int(p["judge_prompt_tokens"]) + a_tok
                tout = int(p["judge_output_tokens"])
                tok_note = (f"tokens per call: judge_prompt_tokens {p['judge_prompt_tokens']} (assumed) + answer "
                            f"{a_tok:.0f} ({a_src}) in, judge_output_tokens {tout} (assumed) out")
            units = bs["items"] * bs["units_per_item"]
            for j in b.get("judges") or []:
                jcfg = cfg["judges"][j]
                calls = len(models) * units * bs["epochs"]
                notes = [f"{len(models)} models x {bs['items']} items x {bs['units_per_item']:.3g} units x "
                         f"{bs['epochs']} epochs ({bs['source']})", tok_note]
                if jcfg.get("parse_retries"):
                    notes.append(f"not counted: up to parse_retries {jcfg['parse_retries']} more calls per unparseable verdict")
                row = self._api_row("judge", f"{name} by {j}", jcfg, f"judges.{j}", calls, 0.0, None, tin, tout,
                                    notes, local_time=False)   # a local judge's time: in the evaluation rows
                row["calls_formula"] = {"models": len(models), "items": bs["items"],
                                        "units_per_item": bs["units_per_item"], "epochs": bs["epochs"]}
                # the judge gate: every judge on the labelled answers, once
                self._gate(name, b, bs, j, jcfg, tin, tout, tok_note)

    def _gate(self, name: str, b: dict, bs: dict, j: str, jcfg: dict, tin: float, tout: float, tok_note: str) -> None:
        """The judge gate's calls: the kind's units for the labelled answers of local files (as
        rule judge_gate builds them); answers behind a URL are counted once downloaded."""
        from ..evaluation.judge_gate import gate_units, read_set, set_entries
        from ..evaluation.kinds import get_kind
        from ..evaluation.kinds.base import is_url

        calls, parts, urls = 0.0, [], []
        for e in set_entries(b):
            if is_url(e["path"]) or not Path(e["path"]).is_file():
                urls.append(e["path"])
                continue
            recs = read_set(e)
            try:
                units = len(_quietly(gate_units, get_kind(b["kind"]), _counting(b), recs)[0])
                parts.append(f"{len(recs)} labelled answers in {e['path']}: {units} units (the kind's)")
            except Exception:  # noqa: BLE001 - the benchmark's data is not local: estimate
                units = len(recs) * bs["units_per_item"]
                parts.append(f"{len(recs)} labelled answers in {e['path']} x {bs['units_per_item']:.3g} units per item")
            calls += units
        if urls:
            self.notes.append(f"judge gate of {name} by {j}: the labelled answers at {', '.join(urls)} "
                              f"(their number is known once downloaded)")
        if calls:
            row = self._api_row("judge gate", f"{name} by {j}", jcfg, f"judges.{j}", calls, 0.0, None, tin, tout,
                                parts + [tok_note], local_time=False)
            if urls:
                row["incomplete"] = True
            if self._info(jcfg).local:
                ips = float(self.p["score_items_per_s"])
                self._gpu_row("judge gate", f"{name} by {j}", f"{_n(calls)} units", calls / ips,
                              f"{ips:g} units/s (assumed: plan.score_items_per_s)",
                              int((self.cfg["evaluation"].get("resources") or {}).get("gpu", 0)))

    # -- GPU-hours ----------------------------------------------------------------------------
    def training(self) -> None:
        from .config import arm_train_cfg, posttrain_arms, posttrain_sizes, train_units, arm_units, split_unit

        cfg, p = self.cfg, self.p
        gpus = int((cfg["training"].get("resources") or {}).get("gpu", 0))
        measured = self.pilot.train_tokens_per_s() if self.pilot else None
        tps, tps_src = (measured if measured else (float(p["train_tokens_per_s"]),
                                                   "assumed: plan.train_tokens_per_s"))
        for unit in train_units(cfg):
            arm = cfg["arms"][split_unit(unit)[0]]
            if arm.get("init_from"):
                continue
            t = arm_train_cfg(cfg, unit)
            tokens, how = self._train_tokens(arm, t)
            self._gpu_row("training", unit, how, tokens / tps if tokens else None, f"{tps:,.0f} tokens/s ({tps_src})", gpus)
        ex_tokens, ex_src = self._posttrain_example_tokens()
        for arm in posttrain_arms(cfg):
            for unit in arm_units(cfg, arm):
                for n in posttrain_sizes(cfg):
                    t = arm_train_cfg(cfg, unit, posttrain=True)
                    if t.get("max_tokens"):
                        tokens, how = float(t["max_tokens"]), f"max_tokens {t['max_tokens']:,}"
                    elif t.get("max_steps"):
                        tokens = float(t["max_steps"]) * t["batch_size"] * t["grad_accum"] * max(1, gpus) * t["seq_len"]
                        how = f"max_steps {t['max_steps']} x batch x grad_accum x seq_len"
                    else:
                        tokens = n * ex_tokens * float(t["epochs"])
                        how = f"{n:,} examples x {ex_tokens:.0f} tokens ({ex_src}) x {t['epochs']:g} epochs"
                    self._gpu_row("post-training", f"{unit}.post{n}", how, tokens / tps, f"{tps:,.0f} tokens/s ({tps_src})", gpus)

    def _train_tokens(self, arm: dict, t: dict) -> tuple[float | None, str]:
        gpus = int((self.cfg["training"].get("resources") or {}).get("gpu", 0))
        if t.get("max_tokens"):
            return float(t["max_tokens"]), f"max_tokens {t['max_tokens']:,}"
        if t.get("max_steps"):
            return (float(t["max_steps"]) * t["batch_size"] * t["grad_accum"] * max(1, gpus) * t["seq_len"],
                    f"max_steps {t['max_steps']} x batch {t['batch_size']} x grad_accum {t['grad_accum']} x seq_len {t['seq_len']}")
        if arm.get("method") == "sft":
            idata = self.cfg.get("instruct_data") or {}
            if arm.get("data") == "instruct":
                tpw = float(self.p["tokens_per_word"])
                per = (int(self.p["question_words"]) + int(idata.get("answer_words", 250))) * tpw
                n = int(idata.get("n", 0))
                return n * per * float(t["epochs"]), (f"{n:,} pairs x {per:.0f} tokens (question_words + answer_words, "
                                                      f"x tokens_per_word: assumed) x {t['epochs']:g} epochs")
            path = Path(str(arm.get("data")))
            if path.is_file():
                chars = len(path.read_text(encoding="utf-8", errors="replace"))
                tok = chars / float(self.p["chars_per_token"])
                return tok * float(t["epochs"]), f"{path} ({_n(tok)} tokens at chars_per_token) x {t['epochs']:g} epochs"
            return None, f"{path}: not a local file (tokens unknown)"
        total, parts = 0.0, []
        for c in ([arm["corpus"]] if isinstance(arm.get("corpus"), str) else list(arm.get("corpus") or [])):
            n = int(arm.get("n_docs") or self.cfg["corpora"][c]["n"])
            per, src = self._doc_tokens.get(c, (None, ""))
            if per is None:
                return None, f"corpus {c}: tokens per document unknown"
            total += n * per
            parts.append(f"{n:,} {c} documents x {per:.0f} tokens")
        return total * float(t["epochs"]), f"{' + '.join(parts)} (as the documents' reply estimate) x {t['epochs']:g} epochs"

    def _posttrain_example_tokens(self) -> tuple[float, str]:
        src = (self.cfg.get("posttrain_data") or {}).get("source") or {}
        path = src.get("path")
        if path and Path(path).is_file():
            import json

            text = Path(path).read_text(encoding="utf-8", errors="replace")
            try:
                recs = json.loads(text)
                recs = recs if isinstance(recs, list) else [recs]
            except ValueError:
                recs = _jsonl(Path(path))
            lens = [sum(len(v) for v in r.values() if isinstance(v, str)) for r in recs if isinstance(r, dict)]
            if lens:
                return (sum(lens) / len(lens) / float(self.p["chars_per_token"]),
                        f"mean of {len(lens)} records of {path} / chars_per_token")
        return float(self.p["posttrain_example_tokens"]), "assumed: plan.posttrain_example_tokens"

    def evaluation(self) -> None:
        from .config import eval_models

        cfg, p = self.cfg, self.p
        models = eval_models(cfg)
        gpus = int((cfg["evaluation"].get("resources") or {}).get("gpu", 0))
        measured = {r: (self.pilot.seconds_per_unit(r) if self.pilot else None)
                    for r in ("completions", "score_logprob", "lm_eval", "judge")}
        gen_tps = float(p["generate_tokens_per_s"])
        score_ips = float(p["score_items_per_s"])
        comp_tokens = comp_n = 0.0
        score_items = lm_items = judge_units = 0.0
        for name, b in cfg["benchmarks"].items():
            bs = self.bench(name)
            if bs["stage"] in ("judge", "inspect"):
                ans = self.pilot.answer_tokens(name, float(p["chars_per_token"])) if self.pilot else None
                a_tok = ans[0] if ans else min(int(p["answer_tokens"]), bs["max_new_tokens"])
                comp_n += bs["items"] * bs["epochs"]
                comp_tokens += bs["items"] * bs["epochs"] * a_tok
            if bs["stage"] == "judge":
                for j in b.get("judges") or []:
                    if self._info(cfg["judges"][j]).local:
                        judge_units += bs["items"] * bs["units_per_item"] * bs["epochs"]
            elif bs["stage"] == "logprob":
                score_items += bs["items"]
            elif bs["stage"] == "lm_eval":
                lm_items += bs["items"]
        m = len(models)
        rows = []
        if comp_n:
            if measured["completions"]:
                s, src = measured["completions"]
                rows.append(("completions", f"{m} models x {_n(comp_n)} completions", m * comp_n * s, f"{s:.3g} s per completion ({src})"))
            else:
                rows.append(("completions", f"{m} models x {_n(comp_tokens)} answer tokens", m * comp_tokens / gen_tps,
                             f"{gen_tps:g} tokens/s (assumed: plan.generate_tokens_per_s; answers: plan.answer_tokens)"))
        for rule, n, what in (("score_logprob", score_items, "items"), ("lm_eval", lm_items, "documents"),
                              ("judge", judge_units, "local-judge units")):
            if not n:
                continue
            if measured[rule]:
                s, src = measured[rule]
                rows.append((rule, f"{m} models x {_n(n)} {what}", m * n * s, f"{s:.3g} s per unit ({src})"))
            else:
                rows.append((rule, f"{m} models x {_n(n)} {what}", m * n / score_ips,
                             f"{score_ips:g} units/s (assumed: plan.score_items_per_s)"))
        for rule, what, secs, note in rows:
            self._gpu_row("evaluation", rule, what, secs, note, gpus)

    # -- power --------------------------------------------------------------------------------
    def comparisons(self) -> None:
        from ..analysis.manipulation import manipulation_pairs

        cfg = self.cfg
        stats = cfg.get("stats") or {}
        alpha = float(stats.get("alpha", 0.05))
        rows = comparison_rows(cfg)
        seen = set()
        for bench, metric, a, b, family in rows:
            metric = metric or self.bench(bench)["primary_metric"]
            key = (bench, metric, a, b)
            if key not in seen:
                seen.add(key)
                self._power_row(family, a, b, bench, metric, alpha)
        mc_metric = (cfg.get("manipulation_check") or {}).get("metric") or "margin"
        for pair in manipulation_pairs(cfg):
            arm, ctl, base = pair["arm"], pair["control"], pair["base"]
            for what, a, b, bench in (("own", arm, ctl, pair["arm_probe"]), ("other", arm, ctl, pair["control_probe"]),
                                      ("arm_vs_base", arm, base, pair["arm_probe"]),
                                      ("control_vs_base", ctl, base, pair["control_probe"])):
                self._power_row(f"manipulation_check:{what}", a, b, bench, mc_metric, alpha)

    def _seeds(self, model: str) -> int:
        from .config import arm_seeds

        arm = model.split(".post")[0]
        if arm not in self.cfg["arms"]:
            return 1
        s = arm_seeds(self.cfg, arm)
        return len(s) if s else 1

    def _power_row(self, family: str, a: str, b: str, bench: str, metric: str, alpha: float) -> None:
        bs = self.bench(bench)
        items, epochs = bs["items"], bs["epochs"]
        seeds = min(self._seeds(a), self._seeds(b))
        n = items * epochs * seeds
        power = float(self.p["power"])
        measured = self.pilot.item_sd(a, b, bench, metric) if self.pilot else None
        degenerate = measured is not None and not measured["sd_items"] > 0
        if measured is not None and not degenerate:
            # the pilot's per-item SD comes from its own epochs x seeds per item: per unit (item x
            # epoch x seed, units independent) it is sd_items x sqrt(epochs_p x seeds_p)
            rep_p, rep = measured["epochs"] * measured["seeds"], epochs * seeds
            sd_unit = measured["sd_items"] * math.sqrt(rep_p)
            sd_items_upper = measured["sd_items"] * math.sqrt(max(1.0, rep_p / rep))
            src = measured["source"] + (f" (per item: {measured['epochs']} epochs x {measured['seeds']} seeds)")
        else:
            sd_unit, src = self._assumed_sd(bench, bs["kind"])
            sd_items_upper = sd_unit
            if degenerate:   # identical per-item scores (e.g. a tiny random model): says nothing of a real run
                src += f" (the pilot's {measured['n']} items differ by a constant: SD 0, not used)"
        self.power.append({
            "family": family, "a": a, "b": b, "benchmark": bench, "metric": metric, "items": items,
            "epochs": epochs, "seeds": seeds, "n": n, "sd": sd_unit, "sd_source": src, "alpha": alpha, "power": power,
            "mde": mde(sd_unit, n, items, alpha, power),
            "mde_items_only": mde(sd_items_upper, items, items, alpha, power),
            "items_source": bs["source"]})

    def _assumed_sd(self, bench: str, kind: str) -> tuple[float, str]:
        table = self.p.get("sd") or {}
        for key in (bench, kind):
            if key in table:
                return float(table[key]), f"assumed: plan.sd.{key}"
        if "default" in table:
            return float(table["default"]), "assumed: plan.sd.default"
        return float(self.sd_defaults["default"]), "assumed: plan.sd.default (the schema's)"

    # -- everything -------------------------------------------------------------------------
    def build(self) -> dict:
        self.documents()
        self.instruct()
        self.probes()
        self.judging()
        self.training()
        self.evaluation()
        self.comparisons()
        api_known = [r["cost_usd"] for r in self.api if r.get("api") and r.get("cost_usd") is not None]
        missing = [f"{r['stage']} {r['what']}" for r in self.api if r.get("api") and r.get("cost_usd") is None]
        incomplete = [f"{r['stage']} {r['what']}" for r in self.api if r.get("incomplete")]
        gpu_h = sum(r["gpu_hours"] or 0 for r in self.gpu)
        cpu_h = sum(r["job_hours"] or 0 for r in self.gpu if not r["gpus"])
        return {"run_name": self.cfg.get("run_name"), "pilot": self.pilot.name if self.pilot else None,
                "api": self.api, "gpu": self.gpu, "power": self.power, "notes": self.notes,
                "totals": {"requests": sum(r["requests"] or 0 for r in self.api if r.get("api")),
                           "tokens_in": sum(r["tokens_in"] or 0 for r in self.api if r.get("api")),
                           "tokens_out": sum(r["tokens_out"] or 0 for r in self.api if r.get("api")),
                           "cost_usd": sum(api_known), "cost_missing": missing, "cost_incomplete": incomplete,
                           "gpu_hours": gpu_h, "cpu_job_hours": cpu_h,
                           "unknown_hours": [f"{r['stage']} {r['what']}" for r in self.gpu if r["job_hours"] is None]}}


def comparison_rows(cfg: dict) -> list[tuple[str, str | None, str, str, str]]:
    """The (benchmark, metric, model_a, model_b, family) rows of ``stats.comparisons``, in the
    order and with the names of ``doctune.analysis.stats.expand_comparisons`` (a test holds them
    equal), for a validated config; without importing scipy, which that module needs."""
    from .config import posttrain_sizes

    out, seen = [], set()
    for comp in (cfg.get("stats") or {}).get("comparisons") or []:
        a, b = comp["a"], comp["b"]
        pairs = [(a, b)] + ([(f"{a}.post{n}", f"{b}.post{n}") for n in posttrain_sizes(cfg)]
                            if comp.get("at_posttrain_sizes") else [])
        for ma, mb in pairs:
            for bench in comp.get("benchmarks") or list(cfg["benchmarks"]):
                for metric in comp.get("metrics") or [None]:
                    row = (bench, metric, ma, mb, comp.get("family") or "all")
                    if row not in seen:
                        seen.add(row)
                        out.append(row)
    return out


def _counting(bench_cfg: dict) -> dict:
    """A benchmark entry to count judged units with: they do not depend on the judge prompt's
    wording, and the builtin wording spares importing the reference package (inspect_evals:
    seconds) just to count."""
    return {**bench_cfg, "prompt_source": "builtin"} if "prompt_source" in bench_cfg else bench_cfg


def _quietly(fn, *args):
    """Call fn with the package's log messages (a loader's dropped-question warnings) held back."""
    import logging

    log = logging.getLogger("doctune")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        return fn(*args)
    finally:
        log.setLevel(old)


def build_plan(cfg: dict, pilot: str | Path | None = None) -> dict:
    """The plan of a validated config (defaults filled in; relative paths from the working
    directory). ``pilot``: a run folder whose measurements replace the assumptions they cover."""
    return _Plan(cfg, Pilot(pilot) if pilot else None).build()


# ----------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------

def _n(x: float | None) -> str:
    if x is None:
        return "?"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}" if x != int(x) else f"{int(x)}"


def _usd(x: float | None) -> str:
    return "missing" if x is None else f"${x:,.2f}" if x >= 0.01 or x == 0 else f"${x:.4f}"


def _h(x: float | None) -> str:
    return "?" if x is None else f"{x:,.2f}" if x >= 0.01 else f"{x:.4f}"


def format_plan(plan: dict, source: str = "") -> str:
    t = plan["totals"]
    out = [f"doctune plan: {source or 'config'} (run {plan['run_name']})"
           + (f", measurements from pilot {plan['pilot']}" if plan["pilot"] else ", no pilot (--pilot runs/NAME measures)"),
           "Each number says where it comes from: the config, a local file, a pilot's measurement or an "
           "assumption (a plan.* config key); formulas in docs/PLAN.md.", ""]
    out += ["== API requests, tokens and cost ==",
            f"{'stage':<14}{'what':<40}{'backend':<9}{'requests':>10}{'tokens in':>11}{'tokens out':>11}{'cost':>12}"]
    for r in plan["api"]:
        cost = _usd(r["cost_usd"]) if r.get("api") else "local"
        out.append(f"{r['stage']:<14}{r['what'][:39]:<40}{str(r.get('backend') or '-'):<9}{_n(r['requests']):>10}"
                   f"{_n(r['tokens_in']):>11}{_n(r['tokens_out']):>11}{cost:>12}")
        extra = []
        if r.get("requests_max") is not None and r.get("api"):
            extra.append(f"worst case {_n(r['requests_max'])} requests, {_usd(r.get('cost_max_usd'))} "
                         f"(every item max_attempts times, every reply at max_new_tokens)")
        for note in r.get("notes", []) + extra:
            out.append(f"{'':<16}- {note}")
    miss = f" + missing: {', '.join(t['cost_missing'])}" if t["cost_missing"] else ""
    inc = f" (not all counted: {', '.join(t['cost_incomplete'])})" if t["cost_incomplete"] else ""
    if plan["notes"]:
        inc += " (see Not counted below)"
    out += [f"{'total (API)':<54}{'':<9}{_n(t['requests']):>10}{_n(t['tokens_in']):>11}{_n(t['tokens_out']):>11}"
            f"{_usd(t['cost_usd']):>12}{miss}{inc}", ""]
    out += ["== GPU-hours (job-hours x GPUs per job; jobs with 0 GPUs count as CPU job-hours) ==",
            f"{'stage':<14}{'what':<22}{'GPUs':>5}{'job-h':>10}{'GPU-h':>10}  work, rate"]
    for r in plan["gpu"]:
        out.append(f"{r['stage']:<14}{r['what'][:21]:<22}{r['gpus']:>5}{_h(r['job_hours']):>10}{_h(r['gpu_hours']):>10}"
                   f"  {r['work']}; {r['rate']}")
    unk = f" (unknown: {', '.join(t['unknown_hours'])})" if t["unknown_hours"] else ""
    out += [f"{'total':<14}GPU-hours {_h(t['gpu_hours'])}, CPU job-hours {_h(t['cpu_job_hours'])}{unk}", ""]
    pw = plan["power"]
    if pw:
        a0 = pw[0]
        out += [f"== Minimum detectable difference (paired, two-sided, alpha {a0['alpha']:g}, power {a0['power']:.0%}, "
                f"t with items-1 df) ==",
                "MDE: n = items x epochs x seeds independent units; items only: if epochs and seeds add nothing "
                "(all the variance between items). The truth lies between.",
                f"{'family':<28}{'a - b':<40}{'benchmark':<19}{'items':>6}{'ep':>4}{'seeds':>6}{'n':>8}{'SD_d':>9}"
                f"{'MDE':>9}{'items only':>11}  SD source"]
        groups: dict[tuple, list[dict]] = {}
        for r in pw:
            key = (r["family"], r["benchmark"], r["metric"], r["n"], r["sd"], r["sd_source"], r["mde"], r["mde_items_only"])
            groups.setdefault(key, []).append(r)
        for rows in groups.values():
            r = rows[0]
            pair = f"{r['a']} - {r['b']}" + (f" (+{len(rows) - 1} more)" if len(rows) > 1 else "")
            out.append(f"{r['family'][:27]:<28}{pair[:39]:<40}{r['benchmark'][:18]:<19}"
                       f"{r['items']:>6}{r['epochs']:>4}{r['seeds']:>6}{r['n']:>8}{r['sd']:>9.3g}"
                       f"{_f(r['mde']):>9}{_f(r['mde_items_only']):>11}  {r['sd_source']}")
            if len(rows) > 1:
                out.append(f"{'':<30}(the same for {', '.join(x['a'] + ' - ' + x['b'] for x in rows[1:])})")
        out.append("items per benchmark:")
        out += [f"  {b}: {src}" for b, src in sorted({(r["benchmark"], r["items_source"]) for r in pw})]
        out.append("")
    if plan["notes"]:
        out += ["== Not counted ==", *[f"- {n}" for n in plan["notes"]], ""]
    return "\n".join(out).rstrip() + "\n"


def _f(x: float | None) -> str:
    return "?" if x is None else f"{x:.3g}"


# ----------------------------------------------------------------------------------------------
# The end of a dry run
# ----------------------------------------------------------------------------------------------

def print_after_dry_run(workflow: Any, config: dict, launch_dir: str | Path) -> None:
    """Register (in the Snakefile, main process) the plan's printout at the end of a dry run.

    Snakemake runs no onstart/onsuccess handler in a dry run, so this is an exit handler: it
    does nothing unless the workflow ran as a dry run (``workflow.dryrun``, known only once the
    run is set up) and ``plan.dry_run`` is true. A normal run pays for one ``atexit`` entry."""
    import atexit
    import copy

    if not (config.get("plan") or {}).get("dry_run", True):
        return
    cfg = copy.deepcopy(dict(config))   # before the rules adjust the config (paths relative to launch_dir)

    def _at_exit() -> None:
        import os
        import sys

        try:
            if not getattr(workflow, "dryrun", False):
                return
        except Exception:  # noqa: BLE001 - no executor: not a run
            return
        here = os.getcwd()
        try:
            os.chdir(launch_dir)
            text = format_plan(build_plan(cfg), "dry run")
        except Exception as exc:  # noqa: BLE001 - the plan must never fail a dry run
            text = f"doctune plan: could not be computed ({type(exc).__name__}: {exc})\n"
        finally:
            os.chdir(here)
        sys.stderr.write("\n" + text)
        sys.stderr.flush()

    atexit.register(_at_exit)
