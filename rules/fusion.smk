# Late fusion: the exact best subset of trials for every k, heuristics and honest selection.
from emorepro.fusion.budget import check_config

FUSION_THREADS = 2

# Sizes that cannot finish whatever the data (C(n, k) subsets at 1 ns each per thread, over
# the set's max_hours: every k of 64 trials, say) fail now, before their trials are trained;
# the job refines the estimate with the real logits and refuses again before searching.
for _name, _spec in config["fusion"].items():
    check_config(_name, _spec, len(fusion_trials(_name)), FUSION_THREADS)


rule fusion:
    input:
        fusion_inputs,
    output:
        csv=update(report(f"{RESULTS}/fusion/{{name}}.csv", category="Fusion")),
        json=update(f"{RESULTS}/fusion/{{name}}.json"),
    log:
        f"{RESULTS}/logs/fusion/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fusion/{{name}}.tsv"
    conda:
        "../envs/report.yaml"
    threads: FUSION_THREADS
    resources:
        # Minutes for Slurm: the job refuses, before searching, any plan estimated over the
        # set's max_hours, so its searches end within that budget (the estimate came out long,
        # not short, on the benchmark); x1.5 for a node slower than the one the rate was
        # calibrated on, plus 30 min to read the trials, run the heuristics and write the table
        # (max_hours: 4 unless set, from the schema's default).
        runtime=lambda wc: 30 + int(90 * config["fusion"][wc.name]["max_hours"]),
    params:
        trials=lambda wc: fusion_trials(wc.name),
        ks=lambda wc: config["fusion"][wc.name]["ks"],
        honest_ks=lambda wc: config["fusion"][wc.name]["honest_ks"],
        honest_method=lambda wc: config["fusion"][wc.name]["honest_method"],
        heuristics=lambda wc: config["fusion"][wc.name]["heuristics"],
        corpus=lambda wc: config["fusion"][wc.name]["corpus"],
        max_hours=lambda wc: config["fusion"][wc.name]["max_hours"],
    script:
        "../workflow/scripts/fusion.py"
