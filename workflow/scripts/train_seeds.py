from emorepro.steps import job_done, log_to, train_seeds

log_to(snakemake.log[0], snakemake.input)
p, out = snakemake.params, snakemake.output
e, t = p.experiment, p.train
parents = snakemake.input.get("parent_model")
train_seeds(runs=p.runs, manifest_csv=snakemake.input.manifest, folds_csv=snakemake.input.folds,
            caches={role: snakemake.input[f"cache_{role}"] for role in e["inputs"] if role not in t["finetune"]},
            outputs=[{k: out[k][i] for k in ("predictions", "log_csv", "model", "provenance")} for i in range(len(p.runs))],
            parent_models=list(parents) if parents else None,
            classes=p.classes, model=e["model"], model_params=e["model_params"], train_params=t,
            threads=snakemake.threads, run_id=p.run_id)
job_done()
