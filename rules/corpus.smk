# Raw corpus -> manifest -> fold files.
# Outputs are update(): a failed re-run restores the previous good outputs (which still match their
# sidecars) instead of leaving the sidecars orphaned.


rule synth_corpus:
    output:
        summary=update(f"{RESULTS}/{{corpus}}/synth/IEMOCAP_full_release/synth_summary.json"),
    params:
        synth=lambda wc: config["corpora"][wc.corpus]["synth"],
        out_dir=lambda wc: corpus_root(wc.corpus),
    log:
        f"{RESULTS}/logs/synth_corpus/{{corpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth_corpus/{{corpus}}.tsv"
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/synth_corpus.py"


rule synth_corpus_csv:
    # The demo's spontaneous telephone-style corpus (format generic_csv): corpus.csv + wav/.
    output:
        csv=update(f"{RESULTS}/{{corpus}}/synth/generic_csv/corpus.csv"),
    params:
        synth=lambda wc: config["corpora"][wc.corpus]["synth"],
    log:
        f"{RESULTS}/logs/synth_corpus/{{corpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth_corpus/{{corpus}}.tsv"
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/synth_spon_corpus.py"


rule synth_jtes_corpus:
    # The demo's JTES (format jtes): jtes_v1.1/wav/<spk>/<emo>/<spk>_<emo>_<NN>.wav + sentences.tsv.
    output:
        summary=update(f"{RESULTS}/{{corpus}}/synth/jtes_v1.1/synth_summary.json"),
    params:
        synth=lambda wc: config["corpora"][wc.corpus]["synth"],
        out_dir=lambda wc: corpus_root(wc.corpus),
    log:
        f"{RESULTS}/logs/synth_corpus/{{corpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synth_corpus/{{corpus}}.tsv"
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/synth_jtes_corpus.py"


rule ingest:
    input:
        unpack(corpus_inputs),
    output:
        manifest=update(f"{RESULTS}/{{corpus}}/manifest.csv"),
    wildcard_constraints:
        corpus=NATIVE_CORPORA,
    params:
        root=lambda wc: corpus_root(wc.corpus),
        format=lambda wc: config["corpora"][wc.corpus]["format"],
        label_map=lambda wc: config["corpora"][wc.corpus]["label_map"],
        drop_labels=lambda wc: config["corpora"][wc.corpus]["drop_labels"],
        sample_rate=lambda wc: config["corpora"][wc.corpus]["sample_rate"],
        expected_counts=lambda wc: config["corpora"][wc.corpus]["expected_counts"],
        sessions=lambda wc: config["corpora"][wc.corpus]["sessions"],
        sentences=lambda wc: config["corpora"][wc.corpus]["sentences"],
        encoding=lambda wc: config["corpora"][wc.corpus]["encoding"],
    log:
        f"{RESULTS}/logs/ingest/{{corpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/ingest/{{corpus}}.tsv"
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/ingest.py"


rule folds:
    input:
        manifest=f"{RESULTS}/{{corpus}}/manifest.csv",
    output:
        folds=update(f"{RESULTS}/{{corpus}}/folds/{{protocol}}.csv"),
    wildcard_constraints:
        corpus=NATIVE_CORPORA,
    params:
        protocol=lambda wc: config["protocols"][wc.protocol],
    log:
        f"{RESULTS}/logs/folds/{{corpus}}/{{protocol}}.log",
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/folds.py"


# A union corpus (format: union, e.g. Zhang et al.'s ACT+SPON) is derived from its members.


rule union_corpus:
    input:
        unpack(union_inputs("manifests")),
    output:
        manifest=update(f"{RESULTS}/{{corpus}}/manifest.csv"),
    wildcard_constraints:
        corpus=UNION_CORPORA,
    params:
        members=lambda wc: list(config["corpora"][wc.corpus]["members"]),
        styles=lambda wc: {m: config["corpora"][m]["style"] for m in config["corpora"][wc.corpus]["members"]},
    log:
        f"{RESULTS}/logs/union_corpus/{{corpus}}.log",
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/union_corpus.py"


rule union_folds:
    input:
        unpack(union_inputs("folds")),
    output:
        folds=update(f"{RESULTS}/{{corpus}}/folds/{{protocol}}.csv"),
    wildcard_constraints:
        corpus=UNION_CORPORA,
    params:
        members=lambda wc: list(config["corpora"][wc.corpus]["members"]),
        n_folds=lambda wc: config["protocols"][wc.protocol]["n_folds"],
    log:
        f"{RESULTS}/logs/folds/{{corpus}}/{{protocol}}.log",
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/union_folds.py"
