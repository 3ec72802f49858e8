# Frame-level pseudo-labels (Pan et al., GMP-ATL): the source run's encoder (stage 1 of the same fold and seed)
# at each layer, k-means at every scale K of the set, fitted on the fold's training utterances only.  One rule per
# set (pseudo_labels_<set>): one job per fold x seed x layer, or with `group_layers` one job per fold x seed that
# writes every layer's file from one encoder pass (fewer, fuller jobs: the demo).  All K of a layer are fitted in
# the same job.  Read by the experiments that name the set (`pseudo_labels: {name, layer}`) through the train
# rule's extra input.
for _name, _set in (config.get("pseudo_labels") or {}).items():

    rule:
        name:
            f"pseudo_labels_{_name}"
        input:
            unpack(pseudo_label_inputs(_name)),
        output:
            labels=update(pseudo_label_outputs(_name)),
        wildcard_constraints:
            layer=r"-?\d+",
            fold=r"\d+",
            seed=r"\d+",
        params:
            name=_name,
            spec=_set,
            layers=lambda wc, _s=_set: list(_s["layers"]) if _s.get("group_layers") else [int(wc.layer)],
        threads: _set["threads"]
        # Set per pseudo-label set: a GPU encodes the training audio, the CPU threads fit the k-means.
        resources:
            gpu=pseudo_label_resource(_name, "gpu", 1),
            mem_mb=pseudo_label_resource(_name, "mem_mb", 16000),
            runtime=pseudo_label_resource(_name, "runtime", 240),
        log:
            f"{RESULTS}/logs/pseudo_labels/{_name}/fold{{fold}}_seed{{seed}}"
            + ("" if _set.get("group_layers") else "_layer{layer}")
            + ".log",
        benchmark:
            (
                f"{RESULTS}/benchmarks/pseudo_labels/{_name}/fold{{fold}}_seed{{seed}}"
                + ("" if _set.get("group_layers") else "_layer{layer}")
                + ".tsv"
            )
        conda:
            "../envs/torch.yaml"
        script:
            "../workflow/scripts/pseudo_labels.py"
