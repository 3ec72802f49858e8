# One job per (paper, variant, fold, seed): train (on cached features, or fine-tuning encoders), predict, score.


def _train_resource(key, default):
    """A train job's resource: the experiment's `resources.<key>` (measured; see config comments), else the default."""

    def get(wc):
        v = (experiment(wc.paper, wc.variant).get("resources") or {}).get(key)
        return default if v is None else v

    return get


def init_from_parents():
    """Experiments that another experiment starts from (train.init_from): their runs keep their weights."""
    return {x["train"]["init_from"] for vs in config["experiments"].values() for x in vs.values() if x["train"].get("init_from")}


def train_params(wc):
    """The experiment's `train`, completed where the workflow knows more than the experiment:
    the checkpoint of each fine-tuned role (from encoders.<inputs.role>), and keep_model for parents."""
    e = experiment(wc.paper, wc.variant)
    t = dict(e["train"])
    t["finetune"] = {role: {"checkpoint": encoder_spec(e["inputs"][role])["checkpoint"],
                            "family": config["encoders"][e["inputs"][role]]["family"], **(opts or {})}
                     for role, opts in (t.get("finetune") or {}).items()}
    if f"{wc.paper}/{wc.variant}" in init_from_parents():
        t["keep_model"] = True
    return t


for _paper, _variants in config["experiments"].items():
    for _variant, _e in _variants.items():
        _key = f"experiments.{_paper}.{_variant}.train"
        for _role in _e["train"].get("finetune") or {}:
            _require(_role in _e["inputs"], f"{_key}.finetune.{_role}",
                     f"names no role of inputs ({sorted(_e['inputs'])}): the role's encoder gives the checkpoint")
        _parent = _e["train"].get("init_from")
        if _parent:
            _pp, _, _pv = _parent.partition("/")
            _require(_pv in config["experiments"].get(_pp, {}), f"{_key}.init_from", f"{_parent!r} is not an experiment")
            _pe = config["experiments"][_pp][_pv]
            _require((_pe["corpus"], _pe["protocol"]) == (_e["corpus"], _e["protocol"]), f"{_key}.init_from",
                     f"{_parent!r} runs on {_pe['corpus']}/{_pe['protocol']}, this experiment on "
                     f"{_e['corpus']}/{_e['protocol']}: a run starts from the same fold of the same folds")
            _missing = sorted(set(_e["seeds"]) - set(_pe["seeds"]))
            _require(not _missing, f"{_key}.init_from", f"{_parent!r} has no run for seed(s) {_missing}")


rule train:
    input:
        unpack(train_inputs),
    output:
        predictions=f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/predictions.csv",
        log_csv=f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/train_log.csv",
        model=f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/model.pt",
        provenance=f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/provenance.json",
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
        predictions=rules.train.output.predictions,
    output:
        metrics=f"{RESULTS}/runs/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}/seed{{seed}}/metrics.json",
    params:
        classes=config["classes"],
        corpus=lambda wc: experiment(wc.paper, wc.variant)["corpus"],
    log:
        f"{RESULTS}/logs/score/{{paper}}/{{variant}}/{{protocol}}/fold{{fold}}_seed{{seed}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/score.py"
