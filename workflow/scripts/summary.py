from emorepro.steps import job_done, log_to, summary

log_to(snakemake.log[0], snakemake.input)
summary(dict(zip(snakemake.params.tables, snakemake.input.tables)), snakemake.params.tables,
        dict(zip(snakemake.params.fusion, snakemake.input.fusion)), snakemake.output.txt, snakemake.output.html,
        corpus_tables=dict(zip(snakemake.params.corpus_tables, snakemake.input.corpus_tables)))
job_done()
