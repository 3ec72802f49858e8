# One job per (paper, variant, fold, seed): train (on cached features, or fine-tuning encoders), predict, score.
# Outputs are update(): a failed re-run restores the previous good outputs (see rules/corpus.smk).


rule train:
    input:
        unpack(train_inputs),
    output:
        predictions=update(f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/predictions.csv"),
        log_csv=update(f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/train_log.csv"),
        model=update(f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/model.pt"),
        provenance=update(f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/provenance.json"),
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


rule score:
    input:
        predictions=str(rules.train.output.predictions),  # str(): without the output-only `update` flag
    output:
        metrics=update(f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/metrics.json"),
    params:
        classes=config["classes"],
        corpus=lambda wc: experiment(wc.paper, wc.variant)["corpus"],
    log:
        f"{RESULTS}/logs/score/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}_seed{{seed}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/score.py"
