# Feature cache: computed once per (corpus, encoder), read by every run that uses it.


rule demo_checkpoint:
    input:
        unpack(demo_checkpoint_inputs),
    output:
        done=update(f"{RESULTS}/checkpoints/demo/{{encoder}}/demo_checkpoint.json"),
    params:
        family=lambda wc: config["encoders"][wc.encoder]["family"],
        demo=lambda wc: config["encoders"][wc.encoder]["demo"],
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
    resources:
        gpu=1,
        mem_mb=8000,
        runtime=120,
    log:
        f"{RESULTS}/logs/extract_features/{{corpus}}/{{encoder}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_features/{{corpus}}/{{encoder}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/extract_features.py"
