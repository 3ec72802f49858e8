# Late fusion: the exact best subset of trials for every k, heuristics and honest selection.


rule fusion:
    input:
        fusion_inputs,
    output:
        csv=report(f"{RESULTS}/fusion/{{name}}.csv", category="Fusion"),
        json=f"{RESULTS}/fusion/{{name}}.json",
    params:
        trials=lambda wc: fusion_trials(wc.name),
        ks=lambda wc: config["fusion"][wc.name]["ks"],
        honest_ks=lambda wc: config["fusion"][wc.name]["honest_ks"],
    threads: 2
    log:
        f"{RESULTS}/logs/fusion/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fusion/{{name}}.tsv"
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/fusion.py"
