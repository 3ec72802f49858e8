from emorepro.steps import job_done, log_to, train

log_to(snakemake.log[0], snakemake.input)
e, w, t = snakemake.params.experiment, snakemake.wildcards, snakemake.params.train
inp = snakemake.input


def cache(role):
    """The role's cache; with an augmented corpus (experiment `augment`), its cache is read too."""
    c, aug = inp[f"cache_{role}"], inp.get(f"aug_cache_{role}")
    return c if not aug else [*([c] if isinstance(c, str) else c), aug]


train(manifest_csv=inp.manifest, folds_csv=inp.folds,
      caches={role: cache(role) for role in e["inputs"] if role not in t["finetune"]},
      outputs={k: snakemake.output[k] for k in ("predictions", "log_csv", "model", "provenance")},
      fold=int(w.fold), seed=int(w.seed), classes=snakemake.params.classes, model=e["model"],
      model_params=e["model_params"], train_params=t, threads=snakemake.threads,
      parent_model=inp.get("parent_model"),
      # named files the recipe reads: the rule's `extra_<name>` inputs (GMP-ATL's frame labels) and MMER's copies
      extra_inputs={**{k[len("extra_"):]: v for k, v in inp.items() if k.startswith("extra_")},
                    **({"aug_copies": inp.aug_copies} if inp.get("aug_copies") else {})},
      audio_manifests=[inp.aug_manifest] if inp.get("aug_manifest") else (),
      run_id={"paper": w.paper, "variant": w.variant, "protocol": w.protocol, "corpus": e["corpus"],
              "inputs": e["inputs"], **({"augment": e["augment"]} if e.get("augment") else {})})
job_done()
