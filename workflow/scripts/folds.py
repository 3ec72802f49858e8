from emorepro.steps import job_done, log_to, make_folds

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params.protocol
make_folds(snakemake.input.manifest, snakemake.output.folds, scheme=p["scheme"], val_policy=p["val_policy"],
           seed=p["seed"], n_folds=p["n_folds"], protocol=snakemake.wildcards.protocol)
job_done()
