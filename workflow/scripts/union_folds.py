from emorepro.steps import job_done, log_to, union_folds

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
union_folds(dict(zip(p.members, snakemake.input.folds)), snakemake.output.folds, n_folds=p.n_folds)
job_done()
