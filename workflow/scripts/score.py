from emorepro.steps import log_to, score

log_to(snakemake.log[0])
score(snakemake.input.predictions, snakemake.output.metrics, classes=snakemake.params.classes,
      fold=int(snakemake.wildcards.fold), seed=int(snakemake.wildcards.seed), corpus=snakemake.params.corpus)
