from emorepro.steps import job_done, log_to, score_runs

log_to(snakemake.log[0], snakemake.input)
score_runs(list(snakemake.input.predictions), list(snakemake.output.metrics), snakemake.params.runs,
           classes=snakemake.params.classes, corpus=snakemake.params.corpus)
job_done()
