# Raw corpus -> manifest -> fold files.


rule synth_corpus:
    output:
        summary=f"{RESULTS}/{{corpus}}/synth/IEMOCAP_full_release/synth_summary.json",
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


rule ingest:
    input:
        unpack(corpus_inputs),
    output:
        manifest=f"{RESULTS}/{{corpus}}/manifest.csv",
    params:
        root=lambda wc: corpus_root(wc.corpus),
        format=lambda wc: config["corpora"][wc.corpus]["format"],
        label_map=lambda wc: config["corpora"][wc.corpus]["label_map"],
        drop_labels=lambda wc: config["corpora"][wc.corpus]["drop_labels"],
        sample_rate=lambda wc: config["corpora"][wc.corpus]["sample_rate"],
        expected_counts=lambda wc: config["corpora"][wc.corpus]["expected_counts"],
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
        folds=f"{RESULTS}/{{corpus}}/folds/{{protocol}}.csv",
    params:
        protocol=lambda wc: config["protocols"][wc.protocol],
    log:
        f"{RESULTS}/logs/folds/{{corpus}}/{{protocol}}.log",
    conda:
        "../envs/corpus.yaml"
    script:
        "../workflow/scripts/folds.py"
