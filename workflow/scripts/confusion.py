from emorepro.steps import confusion, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
confusion(list(snakemake.input.metrics), classes=snakemake.params.classes, title=snakemake.params.title,
          corpus=snakemake.params.get("corpus"),
          **{k: snakemake.output[k] for k in ("pdf", "png", "tex", "csv")})
job_done()
