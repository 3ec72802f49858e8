from emorepro.steps import fusion_confusion, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
fusion_confusion(snakemake.input.csv, snakemake.input.json, classes=p.classes, order=p.order, method=p.method, k=p.k,
                 title=p.title, reported=p.reported, **{k: snakemake.output[k] for k in ("pdf", "png", "tex", "csv")})
job_done()
