from emorepro.steps import job_done, log_to, train

log_to(snakemake.log[0], snakemake.input)
e, w, t = snakemake.params.experiment, snakemake.wildcards, snakemake.params.train
train(manifest_csv=snakemake.input.manifest, folds_csv=snakemake.input.folds,
      caches={role: snakemake.input[f"cache_{role}"] for role in e["inputs"] if role not in t["finetune"]},
      outputs={k: snakemake.output[k] for k in ("predictions", "log_csv", "model", "provenance")},
      fold=int(w.fold), seed=int(w.seed), classes=snakemake.params.classes, model=e["model"],
      model_params=e["model_params"], train_params=t, threads=snakemake.threads,
      parent_model=snakemake.input.get("parent_model"),
      extra_inputs={k[len("extra_"):]: v for k, v in snakemake.input.items() if k.startswith("extra_")},
      run_id={"paper": w.paper, "variant": w.variant, "protocol": w.protocol, "corpus": e["corpus"],
              "inputs": e["inputs"]})
job_done()
