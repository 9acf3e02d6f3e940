# Stage 2b: the contamination guard. Every corpus, the instruct data and the probe sets against the
# items of every configured benchmark (doctune.data.contamination), before training; with
# contamination.filter the flagged texts are dropped from what training reads.

# sources: {name: (file, what it holds, benchmarks it is not compared with)}; a probe set is not
# compared with its own benchmark. Names: corpora as they are, data.instruct, probes.BENCHMARK.
CONTAM_SOURCES = {}
if CONTAM["enabled"]:
    CONTAM_SOURCES = {c: (L.documents(c), "documents", []) for c in CORPORA}
    if any(a["method"] == "sft" and a.get("data") in (None, "instruct") and not a.get("init_from")
           for a in config["arms"].values()):
        CONTAM_SOURCES["data.instruct"] = (L.instruct(), "chat", [])
    for _b, _v in config["benchmarks"].items():
        _path = (_v.get("source") or {}).get("path")
        if KIND_OF[_b].manipulation_metric and _path:   # a probe set (judge-free preference items)
            CONTAM_SOURCES[f"probes.{_b}"] = (_path, "probe", [_b])
CONTAM_TABLES = {s: L.contamination(s) for s in CONTAM_SOURCES}
# the training sources a filter writes cleaned copies of
CONTAM_FILTERED = {s: L.contamination(s, "dropped.json") for s, v in CONTAM_SOURCES.items()
                   if CONTAM_FILTER and v[1] in ("documents", "chat")}


if CONTAM_SOURCES:

    rule contamination:
        """One source against every benchmark's items: n-gram overlap and near-duplicates."""
        wildcard_constraints:
            source=_alt(CONTAM_SOURCES),
        input:
            source=lambda wc: CONTAM_SOURCES[wc.source][0],
            benchmarks=sorted({f for b in BENCHMARKS for f in local_inputs(b)}),
        output:
            report(L.contamination(), caption="../report/contamination.rst", category="Contamination"),
        params:
            kind=lambda wc: CONTAM_SOURCES[wc.source][1],
            skip=lambda wc: CONTAM_SOURCES[wc.source][2],
            benchmarks=config["benchmarks"],
            check=CONTAM,
        log:
            L.log("contamination", "{source}"),
        benchmark:
            L.bench("contamination", "{source}")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/contamination.py"


if CONTAM_FILTER:

    rule decontaminate_documents:
        """A corpus without its flagged documents (contamination.filter); the dropped ids recorded."""
        input:
            docs=L.documents(),
            table=L.contamination("{corpus}"),
        output:
            docs=L.documents_clean(),
            dropped=L.contamination("{corpus}", "dropped.json"),
        log:
            L.log("decontaminate", "{corpus}"),
        benchmark:
            L.bench("decontaminate", "{corpus}")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/decontaminate.py"

    rule decontaminate_instruct:
        """The instruct data without its flagged pairs (contamination.filter)."""
        input:
            docs=L.instruct(),
            table=L.contamination("data.instruct"),
        output:
            docs=L.instruct_clean(),
            dropped=L.contamination("data.instruct", "dropped.json"),
        log:
            L.log("decontaminate", "data.instruct"),
        benchmark:
            L.bench("decontaminate", "data.instruct")
        conda:
            "../envs/stats.yaml"
        script:
            "../scripts/decontaminate.py"
