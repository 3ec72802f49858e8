from emorepro.steps import job_done, log_to, union_corpus

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
union_corpus(dict(zip(p.members, snakemake.input.manifests)), p.styles, snakemake.output.manifest)
job_done()
