# One job per (paper, variant, fold, seed): train (on cached features, or fine-tuning encoders) and predict;
# one per experiment: score.  Outputs are update(): a failed re-run restores the previous good outputs
# (see rules/corpus.smk).


rule train:
    input:
        unpack(train_inputs),
    output:
        predictions=update(
            f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/predictions.csv"
        ),
        log_csv=update(f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/train_log.csv"),
        model=update(f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/model.pt"),
        provenance=update(
            f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/provenance.json"
        ),
    params:
        experiment=lambda wc: experiment(wc.paper, wc.variant),
        train=train_params,
        classes=config["classes"],
    threads: 1
    # Defaults fit the heads-on-cached-features runs; fine-tuning experiments set `resources` from
    # benchmarks/real_shapes.py (config comments give the figures).
    resources:
        gpu=_train_resource("gpu", 1),
        mem_mb=_train_resource("mem_mb", 8000),
        runtime=_train_resource("runtime", 240),
    log:
        f"{RESULTS}/logs/train/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}_seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}_seed{{seed}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/train.py"


# Scoring: one job per experiment (not per run) writes the metrics.json of each of its runs, so the
# metrics are recomputed without retraining (--forcerun score_<paper>_<variant>) at one process each.
# A rule's outputs are fixed when it is defined and experiments differ in folds and seeds, so the
# rules are defined here in a loop: score_<paper>_<variant> (see experiment_rule_name).
for _paper, _variant in all_experiments():
    _runs = experiment_runs(_paper, _variant)

    rule:
        name:
            experiment_rule_name("score", _paper, _variant)
        input:
            predictions=[f"{d}/predictions.csv" for _, _, d in _runs],
        output:
            metrics=update([f"{d}/metrics.json" for _, _, d in _runs]),
        params:
            runs=[{"fold": k, "seed": s} for k, s, _ in _runs],
            classes=config["classes"],
            corpus=experiment(_paper, _variant)["corpus"],
        log:
            f"{RESULTS}/logs/score/{_paper}/{_variant}.log",
        conda:
            "../envs/report.yaml"
        script:
            "../workflow/scripts/score.py"


# Experiments with seeds_per_job > 1 or folds_per_job > 1 train several runs in one job (one process: the ~2
# CPU-s of imports once; each run's outputs and sidecar as the train rule writes them, byte for byte).  One rule
# per (experiment, group of seeds): train_<paper>_<variant>_seeds<a>_<b> for one fold ({fold}), or per (experiment,
# group of folds, group of seeds): ..._folds<a>_<b>_seeds<c>_<d>.  Preferred over `train` for its files.
for _paper, _variant in packed_experiments():
    for _folds in fold_chunks(_paper, _variant):
        for _seeds in seed_chunks(_paper, _variant):
            _name = packed_rule_name(_paper, _variant, _folds, _seeds)

            rule:
                name:
                    _name
                input:
                    unpack(packed_train_inputs(_paper, _variant, _folds, _seeds)),
                output:
                    predictions=update(packed_run_files(_paper, _variant, _folds, _seeds, "predictions.csv")),
                    log_csv=update(packed_run_files(_paper, _variant, _folds, _seeds, "train_log.csv")),
                    model=update(packed_run_files(_paper, _variant, _folds, _seeds, "model.pt")),
                    provenance=update(packed_run_files(_paper, _variant, _folds, _seeds, "provenance.json")),
                params:
                    runs=packed_runs(_folds, _seeds),
                    run_id={
                        "paper": _paper,
                        "variant": _variant,
                        "protocol": experiment(_paper, _variant)["protocol"],
                        "corpus": experiment(_paper, _variant)["corpus"],
                        "inputs": experiment(_paper, _variant)["inputs"],
                    },
                    experiment=experiment(_paper, _variant),
                    train=packed_train_params(_paper, _variant),
                    classes=config["classes"],
                threads: 1
                resources:
                    gpu=packed_resource(_paper, _variant, "gpu", 1),
                    mem_mb=packed_resource(_paper, _variant, "mem_mb", 8000),
                    runtime=packed_resource(
                        _paper, _variant, "runtime", 240, len(_seeds) * (1 if _folds is None else len(_folds))
                    ),
                log:
                    f"{RESULTS}/logs/train/{_paper}/{_variant}/{packed_log_name(_folds, _seeds)}.log",
                benchmark:
                    f"{RESULTS}/benchmarks/train/{_paper}/{_variant}/{packed_log_name(_folds, _seeds)}.tsv"
                conda:
                    "../envs/torch.yaml"
                script:
                    "../workflow/scripts/train_seeds.py"

            workflow.ruleorder(_name, "train")
