from emorepro.steps import job_done, log_to, pseudo_labels

log_to(snakemake.log[0], snakemake.input)
s, w, p = snakemake.params.spec, snakemake.wildcards, snakemake.params
pseudo_labels(snakemake.input.model, snakemake.input.manifest, snakemake.input.folds, list(snakemake.output.labels),
              name=p.name, fold=int(w.fold), seed=int(w.seed), layers=p.layers, role=s["role"], ks=s["ks"],
              kmeans=s["kmeans"], kmeans_seed=s["seed"], batch_size=s["batch_size"], threads=snakemake.threads)
job_done()
