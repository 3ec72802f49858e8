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


rule intermediate_fusion:
    # Lee et al. Table 5: a classifier per fold on the concatenated pooled FE outputs of every trial of the set
    # (emorepro.fusion.intermediate), trained on training utterances only.
    input:
        unpack(intermediate_inputs),
    output:
        csv=update(f"{RESULTS}/fusion_intermediate/{{name}}.csv"),
        json=update(f"{RESULTS}/fusion_intermediate/{{name}}.json"),
    wildcard_constraints:
        name=INTERMEDIATE_SETS,
    log:
        f"{RESULTS}/logs/fusion_intermediate/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/fusion_intermediate/{{name}}.tsv"
    conda:
        "../envs/report.yaml"
    # One BLAS thread: the fits are small matrix products (the real 70-trial set: ~9 GFLOP per lbfgs iteration,
    # ~2 min per fold on one core), and OpenBLAS's extra threads spin when the cores are shared.
    threads: 1
    # 70 trials x 1,024-d x ~20k training utterances (IEMOCAP + JTES) = 5.7 GB of float32 features per fold,
    # and as much again standardised: 32 GB.
    resources:
        mem_mb=32000,
        runtime=240,
    params:
        trials=lambda wc: fusion_trials(wc.name),
        classes=config["classes"],
        corpus=lambda wc: config["fusion"][wc.name]["corpus"],
        options=lambda wc: config["fusion"][wc.name]["intermediate"],
    script:
        "../workflow/scripts/intermediate_fusion.py"


rule fusion_confusion:
    # Lee et al. Fig. 4: the confusion matrix of one fusion output row (config fusion_figures), in the paper's order.
    input:
        csv=lambda wc: f"{RESULTS}/fusion/{config['fusion_figures'][wc.figure]['fusion']}.csv",
        json=lambda wc: f"{RESULTS}/fusion/{config['fusion_figures'][wc.figure]['fusion']}.json",
    output:
        pdf=update(report(f"{RESULTS}/figures/fusion/{{figure}}.pdf", category="Confusion matrices")),
        png=update(f"{RESULTS}/figures/fusion/{{figure}}.png"),
        tex=update(f"{RESULTS}/figures/fusion/{{figure}}.tex"),
        csv=update(f"{RESULTS}/figures/fusion/{{figure}}.csv"),
    log:
        f"{RESULTS}/logs/fusion_confusion/{{figure}}.log",
    conda:
        "../envs/report.yaml"
    params:
        classes=config["classes"],
        order=lambda wc: config["fusion_figures"][wc.figure]["classes"],
        method=lambda wc: config["fusion_figures"][wc.figure]["method"],
        k=lambda wc: config["fusion_figures"][wc.figure]["k"],
        title=lambda wc: config["fusion_figures"][wc.figure]["title"],
        reported=lambda wc: config["fusion_figures"][wc.figure]["reported"],
    script:
        "../workflow/scripts/fusion_confusion.py"
