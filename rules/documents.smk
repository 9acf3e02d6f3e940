# Stage 1: base models, the template grid and the synthetic documents.


rule build_tiny_model:
    """Build a tiny random Llama + BPE tokenizer offline (demo and tests only)."""
    input:
        text=f"{RES}/fixtures/tiny_tokenizer_corpus.txt",
    output:
        directory(L.base_model("{tinybase}")),
    params:
        seed=lambda wc: config["seed"] + BASES.index(wc.tinybase),
    log:
        L.log("build_tiny_model", "{tinybase}"),
    benchmark:
        L.bench("build_tiny_model", "{tinybase}")
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/build_tiny_model.py"


rule import_gguf:
    """Import a GGUF checkpoint (base_models.NAME.gguf) once into a safetensors model folder;
    its sha256 is checked against the config's and recorded with the source in the provenance."""
    input:
        gguf=lambda wc: gguf_source(wc.ggufbase),
    output:
        directory(L.base_model("{ggufbase}")),
    params:
        gguf=lambda wc: config["base_models"][wc.ggufbase]["gguf"],
        dtype=lambda wc: config["base_models"][wc.ggufbase].get("dtype"),
        key=lambda wc: f"base_models.{wc.ggufbase}.gguf",
    log:
        L.log("import_gguf", "{ggufbase}"),
    benchmark:
        L.bench("import_gguf", "{ggufbase}")
    threads: 1
    resources:
        mem_mb=lambda wc, input: max(4000, 8 * int(sum(Path(f).stat().st_size for f in input) / 2**20) + 2000),
        runtime=30,
        gpu=0,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/import_gguf.py"


rule base_model_spec:
    """The spec (model.json) of an untrained base model: what every later stage loads."""
    input:
        lambda wc: base_model_input(wc.base),
    output:
        L.spec("{base}"),
    params:
        base=lambda wc: dc.base_model_cfg(config, wc.base),
    log:
        L.log("base_model_spec", "{base}"),
    benchmark:
        L.bench("base_model_spec", "{base}")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/base_model_spec.py"


rule specs:
    """Plan the documents: an even, seeded walk over the template grid."""
    input:
        grid=expand(f"{RES}/grid/{{f}}.txt", f=["institutions", "domains", "doc_types", "reasoning"]),
        corpus=lambda wc: config["corpora"][wc.corpus].get("definition") or f"{RES}/corpora/{wc.corpus}.yaml",
        prompt=corpus_prompt,
    output:
        L.specs(),
    params:
        corpus=lambda wc: config["corpora"][wc.corpus],
        resources_dir=lambda wc, input: str(Path(input.grid[0]).parent.parent),
    log:
        L.log("specs", "{corpus}"),
    benchmark:
        L.bench("specs", "{corpus}")
    conda:
        "../envs/generate.yaml"
    script:
        "../scripts/specs.py"


rule documents:
    """Generate, validate and store the documents of one corpus (never pays twice: cached)."""
    input:
        specs=L.specs(),
        corpus=lambda wc: config["corpora"][wc.corpus].get("definition") or f"{RES}/corpora/{wc.corpus}.yaml",
        model=lambda wc: backend_model_inputs(config["generators"][config["corpora"][wc.corpus]["generator"]]),
    output:
        docs=L.documents(),
        report=L.documents_report(),
    params:
        generator=lambda wc: dc.resolve_backend(config, config["generators"][config["corpora"][wc.corpus]["generator"]]),
        validation=config["validation"],
        cache=lambda wc: L.cache("documents", f"{wc.corpus}.jsonl"),
    log:
        L.log("documents", "{corpus}"),
    benchmark:
        L.bench("documents", "{corpus}")
    threads: lambda wc: corpus_res(wc.corpus, "threads")
    resources:
        gpu=lambda wc: corpus_res(wc.corpus, "gpu"),
        mem_mb=lambda wc: corpus_res(wc.corpus, "mem_mb"),
        runtime=lambda wc: corpus_res(wc.corpus, "runtime"),
    conda:
        "../envs/generate.yaml"
    script:
        "../scripts/documents.py"


rule doc_prefix:
    """The first n documents of a corpus, for arms with n_docs (a sweep's smaller doses)."""
    input:
        lambda wc: corpus_docs(wc.corpus),
    output:
        L.documents_prefix(),
    params:
        key=lambda wc: n_docs_key(wc.corpus, wc.n),
    log:
        L.log("doc_prefix", "{corpus}.first{n}"),
    benchmark:
        L.bench("doc_prefix", "{corpus}.first{n}")
    conda:
        "../envs/stats.yaml"
    script:
        "../scripts/doc_prefix.py"
