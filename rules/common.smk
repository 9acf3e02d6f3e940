# Shared names, wildcard constraints and input functions.
import re
import sys

from doctune.workflow import config as dc
from doctune.evaluation.kinds import get_kind
from doctune.llm.registry import backend_info
from doctune.workflow import layout as L   # where every file of the run lives
from doctune.analysis.manipulation import manipulation_pairs
from doctune.workflow.sweeps import sweep_arms, sweep_plan

# A run killed with SIGKILL leaves Snakemake's locks behind; remove those no living Snakemake
# holds, so rerunning the same command is enough (doctune.workflow.runlock).
if workflow.is_main_process:
    from doctune.workflow.runlock import clear_stale_locks

    if clear_stale_locks():
        print("doctune: removed the locks of a killed Snakemake run (no process holds them)", file=sys.stderr)


def _alt(names):
    """A regex matching exactly one of the names (or nothing when the list is empty)."""
    names = list(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


BASES = list(config["base_models"])
ARMS = list(config["arms"])
UNITS = dc.train_units(config)  # trained models: ARM, or ARM@SEED per seed
TRAINED_UNITS = [u for u in UNITS if not config["arms"][dc.split_unit(u)[0]].get("init_from")]
ALIAS_UNITS = [u for u in UNITS if u not in TRAINED_UNITS]
POST_UNITS = sorted({u.rsplit(".post", 1)[0] for u in dc.posttrain_units(config)})
CORPORA = list(config["corpora"])
POST_ARMS = dc.posttrain_arms(config)
POST_SIZES = list(config["posttrain"]["sizes"])
MODELS = dc.eval_models(config)  # evaluated models (leaves)
REPORTED = dc.reported_models(config)  # + seed averages
AGG = {m: u for m, u in dc.seed_aggregates(config).items() if m in REPORTED}
BENCHMARKS = list(config["benchmarks"])
# probe benchmarks whose items the probes stage writes (rules/probes.smk): their source is its output
PROBES_WRITTEN = [b for b, v in config["benchmarks"].items() if v.get("write")]
for _b in PROBES_WRITTEN:
    config["benchmarks"][_b]["source"] = {**(config["benchmarks"][_b].get("source") or {}),
                                          "path": L.probes(_b)}
BENCH_KIND = {b: v["kind"] for b, v in config["benchmarks"].items()}
KIND_OF = {b: get_kind(k) for b, k in BENCH_KIND.items()}  # the kind modules (doctune.evaluation.kinds)
# benchmarks by the stage (rule) that produces their scores
JUDGED = [b for b in BENCHMARKS if KIND_OF[b].stage == "judge"]
LOGPROB = [b for b in BENCHMARKS if KIND_OF[b].stage == "logprob"]
LMEVAL = [b for b in BENCHMARKS if KIND_OF[b].stage == "lm_eval"]
TINY_BASES = [b for b, v in config["base_models"].items() if v.get("build_tiny")]
GGUF_BASES = [b for b, v in config["base_models"].items() if v.get("gguf") and not v.get("build_tiny")]
RES = config["resources_dir"]
# the judge validity gate of every judged benchmark (rule judge_gate), read before its verdicts are used
GATE = {b: L.judge_gate(b) for b in JUDGED}
# the manipulation check's pairs of document arms (doctune.analysis.manipulation)
MC_PAIRS = manipulation_pairs(config)
# sweeps (doctune.workflow.sweeps): their points are arms; the dose-response stage reads them
SWEEPS = sweep_plan(config)
SWEEP_POINTS = sweep_arms(config)
PLOTS = [
    L.plot("robustness"),
    L.plot("dimension_profile"),
    L.plot("overview"),
    L.plot("loss_curves"),
] + ([L.plot("manipulation")] if MC_PAIRS else []) + [L.plot(f"dose_{s['name']}") for s in SWEEPS]

wildcard_constraints:
    base=_alt(BASES),
    arm=_alt(TRAINED_UNITS),
    alias=_alt(ALIAS_UNITS),
    punit=_alt(POST_UNITS),
    agg=_alt(AGG),
    arm_name=_alt([a for a in ARMS if config["arms"][a].get("replay_fraction")]),
    corpus=_alt(CORPORA),
    n=r"\d+",
    judged=_alt(JUDGED),
    probe=_alt(PROBES_WRITTEN),
    logprob=_alt(LOGPROB),
    lmeval=_alt(LMEVAL),
    benchmark=_alt(BENCHMARKS),
    model=_alt(MODELS),
    tinybase=_alt(TINY_BASES),
    ggufbase=_alt(GGUF_BASES),
    sweep=_alt([s["name"] for s in SWEEPS]),


def resources_of(section):
    """The resources block of a config section (training, evaluation, a generator...)."""
    r = dict(section.get("resources") or {})
    return {
        "gpu": r.get("gpu", 0),
        "mem_mb": r.get("mem_mb", 4000),
        "runtime": r.get("runtime", 60),
        "threads": r.get("threads", 1),
        "gpu_model": r.get("gpu_model"),
    }


def res_kw(section):
    """Snakemake resources (gpu_model only when set, so the SLURM executor does not see None)."""
    r = resources_of(section)
    kw = {"gpu": r["gpu"], "mem_mb": r["mem_mb"], "runtime": r["runtime"]}
    if r["gpu_model"]:
        kw["gpu_model"] = r["gpu_model"]
    return kw


def base_model_input(name):
    """The files a base model's use depends on: the built tiny model or the imported GGUF
    checkpoint, or nothing for hub ids and local folders."""
    return [L.base_model(name)] if name in TINY_BASES + GGUF_BASES else []


def gguf_source(name):
    """The GGUF file a base model imports, when it can be found now (so a changed file reruns
    the import); [] otherwise: preflight has reported it, and the import job names the key."""
    from doctune.models.gguf import GGUFError, resolve_gguf

    try:
        return [str(resolve_gguf(config["base_models"][name]["gguf"], f"base_models.{name}.gguf"))]
    except GGUFError:
        return []


def spec_file(model):
    return L.spec(model)


def backend_model_inputs(entry):
    """Inputs of an LLM backend entry: a local backend's model spec file (built first)."""
    if backend_info(entry.get("backend")).local:
        return [spec_file(entry["model"])]
    return []


def judge_inputs(benchmark):
    out = []
    for j in config["benchmarks"][benchmark].get("judges") or []:
        out += backend_model_inputs(config["judges"][j])
    return sorted(set(out))


def gate_sets(benchmark):
    """The local labelled-answer files of a judged benchmark's judge gate (judge_validation)."""
    out = []
    for e in config["benchmarks"][benchmark].get("judge_validation") or []:
        path = e if isinstance(e, str) else e["path"]
        if not re.match(r"^[a-z][a-z0-9+.-]*://", path):   # URLs are downloaded by the gate
            out.append(path)
    return out


def judge_prompt_files():
    """The prompt templates of the judged kinds (kinds/NAME/prompts/): editing one reruns the judging."""
    return sorted({f for b in JUDGED for f in KIND_OF[b].prompt_files()})


def resolved_judges(benchmark):
    return {j: dc.resolve_backend(config, config["judges"][j]) for j in config["benchmarks"][benchmark]["judges"]}


def gen_cfg(benchmark):
    g = dc.deep_merge(config["evaluation"]["generation"], config["benchmarks"][benchmark].get("generation") or {})
    if config["benchmarks"][benchmark].get("epochs"):
        g["epochs"] = config["benchmarks"][benchmark]["epochs"]
    return g


def local_inputs(bench):
    """Local benchmark files named in the config (so editing them reruns what depends on them)."""
    return KIND_OF[bench].data_files(config["benchmarks"][bench])


def corpus_res(corpus, key):
    return resources_of(config["generators"][config["corpora"][corpus]["generator"]])[key]


def corpus_prompt(wildcards):
    """The corpus's document prompt file for this run (so editing it re-plans the documents)."""
    from doctune.documents.corpus import CorpusError, apply_run_settings, load_corpus_def, prompt_file

    ccfg = config["corpora"][wildcards.corpus]
    try:
        cdef = apply_run_settings(load_corpus_def(RES, wildcards.corpus, ccfg.get("definition")), ccfg)
    except CorpusError:   # preflight has reported it
        return []
    p = prompt_file(RES, cdef)
    return [str(p)] if p is not None else []


TRAIN_RES = resources_of(config["training"])
EVAL_RES = resources_of(config["evaluation"])


def instruct_corpus_docs(wildcards):
    c = config["instruct_data"].get("corpus")
    if c and config["instruct_data"].get("match_welfare_tokens"):
        return [L.documents(c)]
    return []


CONTAM = config["contamination"]
# contamination.filter: training reads the corpora and instruct data without the flagged texts
CONTAM_FILTER = CONTAM["enabled"] and CONTAM["filter"]


def corpus_docs(corpus):
    """The documents of a corpus that training reads."""
    return L.documents_clean(corpus) if CONTAM_FILTER else L.documents(corpus)


def arm_data(unit):
    a = config["arms"][dc.split_unit(unit)[0]]
    if a["method"] == "doc":
        corpora = a["corpus"] if isinstance(a["corpus"], list) else [a["corpus"]]
        if a.get("n_docs"):   # the first n documents of each corpus (rule doc_prefix)
            return [L.documents_prefix(c, a["n_docs"]) for c in corpora]
        return [corpus_docs(c) for c in corpora]
    if a.get("data") in (None, "instruct"):
        return [L.instruct_clean() if CONTAM_FILTER else L.instruct()]
    return [a["data"]]


def n_docs_key(corpus, n):
    """The config key that asks for the first n documents of a corpus (for the prefix job's errors)."""
    from doctune.workflow.sweeps import sweep_arms

    points = sweep_arms(config)
    for arm, a in config["arms"].items():
        if a.get("n_docs") == int(n) and corpus in dc._as_list(a.get("corpus")):
            return f"sweeps.{points[arm]}.vary.n_docs" if arm in points else f"arms.{arm}.n_docs"
    return "n_docs"


def judge_gpus(bench):
    """A benchmark's judging job asks for the evaluation GPUs when one of its judges is a local model."""
    local = any(backend_info(config["judges"][j]["backend"]).local for j in config["benchmarks"][bench]["judges"])
    return EVAL_RES["gpu"] if local else 0


def metrics_input(model, bench):
    return KIND_OF[bench].output_file(model, bench)


def replay_corpora(unit):
    """Corpora whose documents a unit replays during post-training ([] without replay)."""
    arm = dc.split_unit(unit)[0]
    a = config["arms"][arm]
    if not a.get("replay_fraction"):
        return []
    c = a.get("corpus") or config["arms"][a["init_from"]].get("corpus")
    return c if isinstance(c, list) else [c]


def replay_documents(arm):
    """The documents an arm replays: those it was trained on (its prefixes with n_docs), or those
    of the arm a preservation arm reuses."""
    a = config["arms"][arm]
    n = a.get("n_docs") if a.get("corpus") else config["arms"][a["init_from"]].get("n_docs") if a.get("init_from") else None
    return [L.documents_prefix(c, n) if n else corpus_docs(c) for c in replay_corpora(arm)]


def posttrain_data_file(wc):
    arm = dc.split_unit(wc.punit)[0]
    if replay_corpora(wc.punit):
        return L.posttrain(wc.n, replay=arm)
    return L.posttrain(wc.n)


def alias_source(unit):
    arm, seed = dc.split_unit(unit)
    src = config["arms"][arm]["init_from"]
    return src if seed is None else f"{src}@{seed}"


def stage_outputs(pattern, benches):
    """One output per benchmark of a stage, for the job's model: pattern has {model} and {b}."""
    return [pattern.replace("{b}", b) for b in benches]


def stage_data(benches):
    return sorted({f for b in benches for f in local_inputs(b)})


# Code dependencies: Snakemake's `code` trigger sees only a rule's own script. Every rule with a
# script gets a `code` param, the hash of the package files its script reaches through its
# imports (doctune.workflow.codedeps; static, nothing is imported), so editing a module reruns
# exactly the rules whose scripts use it and what follows. The benchmark kinds count only for the
# jobs that handle benchmarks of that kind, so editing one kind reruns only the jobs of its benchmarks
# (and what reads every benchmark: metrics, statistics, summary, plots). Called from the Snakefile
# after all rules.
def rule_kinds():
    """{rule: the kinds of the benchmarks it handles}; rules not named handle every used kind."""
    kinds = lambda benches: {BENCH_KIND[b] for b in benches}   # noqa: E731
    judged = kinds(JUDGED)
    return {"completions": judged, "judge": judged, "judge_gate": judged, "rating_sample": judged,
            "agreement": judged, "inspect_export": judged, "score_logprob": kinds(LOGPROB),
            "lm_eval": kinds(LMEVAL), "inspect_task": kinds(b for b in BENCHMARKS if KIND_OF[b].stage == "inspect"),
            "probes": kinds(PROBES_WRITTEN)}


def add_code_params():
    from doctune.evaluation.kinds import kind_dir, kind_names
    from doctune.workflow.codedeps import cached_code_hashes

    base = Path(workflow.basedir)
    used, per_rule = set(BENCH_KIND.values()), rule_kinds()
    jobs = {}
    for r in workflow.rules:
        if r.script and "code" not in r.params.keys():
            script = Path(str(r.basedir)) / r.script
            if not script.is_file():
                script = base / "scripts" / Path(r.script).name
            mine = per_rule.get(r.name, used)
            jobs[r.name] = (script, tuple(kind_dir(k) for k in kind_names() if k not in mine))
    # kept in the run folder between calls: a no-op rerun parses no source file
    hashes = cached_code_hashes(jobs, base / "src", [base / "src", base / "scripts"],
                                ".snakemake/doctune-code-hashes.json")
    for r in workflow.rules:
        if r.name in jobs:
            r.set_params(code=hashes[r.name])


def dose_models(sweep):
    """The models a sweep's dose-response reads: its points, its control, the untrained base model,
    and their post-trained models (a model left out of evaluation.models is reported missing)."""
    ms = [p["arm"] for p in sweep["points"]] + [m for m in (sweep["control"], sweep["base"]) if m]
    ms += [f"{m}.post{n}" for m in ms for n in POST_SIZES]
    return [m for m in ms if m in REPORTED]


def trained_units_of(arm):
    """The trained units (ARM, or ARM@SEED per seed) behind an arm's model, for its token count."""
    return [u for u in TRAINED_UNITS if dc.split_unit(u)[0] == arm]


def probe_corpus(wc):
    """The corpus a model-written probe benchmark probes (rule probes)."""
    return config["benchmarks"][wc.probe]["corpus"]


def probe_generator(wc):
    """The generators entry that writes a model-written probe benchmark's items (rule probes)."""
    return config["generators"][config["benchmarks"][wc.probe]["write"]["generator"]]


def probe_template(write_cfg):
    """The request template of a model-written probe benchmark (its kind's own unless the config names one)."""
    from doctune.evaluation.kinds.probe.writing import template_file

    return template_file(write_cfg)
