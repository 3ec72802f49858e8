# Feature cache: computed once per (corpus, encoder), read by every run that uses it.


rule demo_checkpoint:
    input:
        unpack(demo_checkpoint_inputs),
    output:
        done=update(f"{RESULTS}/checkpoints/demo/{{encoder}}/demo_checkpoint.json"),
    params:
        family=lambda wc: config["encoders"][wc.encoder]["family"],
        # `config` (config.json overrides, e.g. num_hidden_layers) only when set: other encoders' params stay as they were
        demo=lambda wc: {k: v for k, v in config["encoders"][wc.encoder]["demo"].items() if k != "config" or v},
    log:
        f"{RESULTS}/logs/demo_checkpoint/{{encoder}}.log",
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/demo_checkpoint.py"


rule extract_features:
    input:
        unpack(extraction_inputs),
    output:
        cache=f"{RESULTS}/{{corpus}}/features/{{encoder}}/manifest.json",
    params:
        spec=lambda wc: encoder_spec(wc.encoder),
    threads: 2
    # Measured peak RSS: fbank 0.75 GB on the demo corpus (streaming: a 256 MB shard at a time, so about
    # the same on IEMOCAP); the real-shaped HuBERT-large / DeBERTaV3-large / RoBERTa-large on CPU 2.6 / 2.9 /
    # 2.1 GB (benchmarks/real_shapes.py, 4 utterances): 8 GB leaves room for a 60 s batch and a shard.
    resources:
        gpu=lambda wc: 1 if _neural(wc) else 0,
        mem_mb=lambda wc: 8000 if _neural(wc) else 2000,
        runtime=120,
    log:
        f"{RESULTS}/logs/extract_features/{{corpus}}/{{encoder}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_features/{{corpus}}/{{encoder}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/extract_features.py"
