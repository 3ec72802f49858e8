from emorepro.steps import job_done, log_to, table

log_to(snakemake.log[0], snakemake.input)
table(snakemake.params.spec, snakemake.params.runs, snakemake.output.tex, snakemake.output.csv, snakemake.output.md)
job_done()
