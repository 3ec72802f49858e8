# MMER's augmentation stage (Ghosh et al. 2022): a corpus manifest -> back-translated texts -> spoken copies
# -> an augmented corpus (generic CSV) that `ingest` and `extract_features` treat like any corpus.
# A corpus with an `augment:` block (config corpora.<name>.augment) is made here; nothing runs unless a job
# needs it (an experiment that trains with ACL asks for it through augment_inputs()).


include: "augment_common.smk"


rule back_translate:
    input:
        unpack(back_translate_inputs),
    output:
        texts=update(f"{RESULTS}/{{corpus}}/back_translation/texts.csv"),
    log:
        f"{RESULTS}/logs/back_translate/{{corpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/back_translate/{{corpus}}.tsv"
    wildcard_constraints:
        corpus=AUGMENTED_CORPORA,
    conda:
        "../envs/augment.yaml"
    threads: 2
    resources:
        gpu=lambda wc: _uses_gpu(wc.corpus, "back_translation", "nllb"),
        mem_mb=8000,
        runtime=120,
    params:
        source=lambda wc: augment_spec(wc.corpus)["source"],
        seed=lambda wc: augment_spec(wc.corpus)["seed"],
        back_translation=lambda wc: augment_backend(wc.corpus, "back_translation"),
    script:
        "../workflow/scripts/back_translate.py"


rule synthesize:
    input:
        unpack(synthesize_inputs),
    output:
        corpus=update(f"{RESULTS}/{{corpus}}/tts/corpus.csv"),
        copies=update(f"{RESULTS}/{{corpus}}/tts/copies.csv"),
    log:
        f"{RESULTS}/logs/synthesize/{{corpus}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthesize/{{corpus}}.tsv"
    wildcard_constraints:
        corpus=AUGMENTED_CORPORA,
    conda:
        "../envs/augment.yaml"
    threads: 2
    resources:
        gpu=lambda wc: _uses_gpu(wc.corpus, "tts", "yourtts"),
        mem_mb=8000,
        runtime=720,
    params:
        source=lambda wc: augment_spec(wc.corpus)["source"],
        seed=lambda wc: augment_spec(wc.corpus)["seed"],
        tts=lambda wc: augment_backend(wc.corpus, "tts"),
        sample_rate=lambda wc: config["corpora"][wc.corpus]["sample_rate"],
    script:
        "../workflow/scripts/synthesize.py"


rule augment_demo_checkpoint:
    # Tiny random-init NLLB / YourTTS in the released layouts (emorepro.augment.demo), when a backend sets `demo`.
    input:
        unpack(augment_demo_checkpoint_inputs),
    output:
        done=update(f"{RESULTS}/checkpoints/demo_augment/{{corpus}}/{{backend}}/demo_checkpoint.json"),
    log:
        f"{RESULTS}/logs/augment_demo_checkpoint/{{corpus}}/{{backend}}.log",
    wildcard_constraints:
        corpus=AUGMENTED_CORPORA,
        backend="nllb|yourtts",
    conda:
        "../envs/augment.yaml"
    params:
        seed=lambda wc: next(
            augment_spec(wc.corpus)[s]["demo"]["seed"]
            for s in ("back_translation", "tts")
            if augment_spec(wc.corpus)[s]["backend"] == wc.backend
        ),
    script:
        "../workflow/scripts/augment_demo_checkpoint.py"
