# Feature cache: computed once per (corpus, encoder), read by every run that uses it.


rule extract_features:
    input:
        manifest=f"{RESULTS}/{{corpus}}/manifest.csv",
    output:
        cache=f"{RESULTS}/{{corpus}}/features/{{encoder}}/manifest.json",
    params:
        spec=lambda wc: config["encoders"][wc.encoder],
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
