from emorepro.steps import log_to, train

log_to(snakemake.log[0])
e, w, t = snakemake.params.experiment, snakemake.wildcards, snakemake.params.train
train(manifest_csv=snakemake.input.manifest, folds_csv=snakemake.input.folds,
      caches={role: snakemake.input[f"cache_{role}"] for role in e["inputs"] if role not in t["finetune"]},
      out_dir=snakemake.output.provenance.rsplit("/", 1)[0], fold=int(w.fold), seed=int(w.seed),
      classes=snakemake.params.classes, model=e["model"], model_params=e["model_params"],
      train_params={**t, "threads": snakemake.threads}, parent_model=snakemake.input.get("parent_model"),
      run_id={"paper": w.paper, "variant": w.variant, "protocol": w.protocol, "corpus": e["corpus"],
              "inputs": e["inputs"]})
