# Frame-level pseudo-labels (Pan et al., GMP-ATL): the source run's encoder (stage 1 of the same fold and seed)
# at one layer, k-means at every scale K of the set, fitted on the fold's training utterances only.  One job per
# set x fold x seed x layer: one pass of the encoder serves every K.  Read by the experiments that name the set
# (`pseudo_labels: {name, layer}`) through the train rule's extra input.


rule pseudo_labels:
    input:
        unpack(pseudo_label_inputs),
    output:
        labels=update(f"{RESULTS}/pseudo_labels/{{name}}/fold{{fold}}/seed{{seed}}/layer{{layer}}.npz"),
    wildcard_constraints:
        name=PSEUDO_LABEL_SETS,
        layer=r"-?\d+",
    params:
        spec=lambda wc: config["pseudo_labels"][wc.name],
    threads: lambda wc: config["pseudo_labels"][wc.name]["threads"]
    # Set per pseudo-label set (config comments give benchmarks/gmp_kmeans.py's figures): a GPU encodes the
    # training audio, the CPU threads fit the k-means.
    resources:
        gpu=_pseudo_label_resource("gpu", 1),
        mem_mb=_pseudo_label_resource("mem_mb", 16000),
        runtime=_pseudo_label_resource("runtime", 240),
    log:
        f"{RESULTS}/logs/pseudo_labels/{{name}}/fold{{fold}}_seed{{seed}}_layer{{layer}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/pseudo_labels/{{name}}/fold{{fold}}_seed{{seed}}_layer{{layer}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/pseudo_labels.py"
