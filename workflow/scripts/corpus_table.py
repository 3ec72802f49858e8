from emorepro.steps import corpus_table, log_to

log_to(snakemake.log[0])
corpus_table(snakemake.params.spec, snakemake.params.manifests, snakemake.output.tex, snakemake.output.csv,
             snakemake.output.md)
