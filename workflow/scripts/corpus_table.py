from emorepro.steps import corpus_table, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
corpus_table(snakemake.params.spec, snakemake.params.manifests, snakemake.output.tex, snakemake.output.csv,
             snakemake.output.md)
job_done()
