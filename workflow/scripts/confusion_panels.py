from emorepro.steps import confusion_panels, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
confusion_panels(p.panels, classes=p.classes, title=p.title, bias_class=p.bias_class, claims=p.claims, notes=p.notes,
                 **{k: snakemake.output[k] for k in ("pdf", "png", "tex", "csv", "md")})
job_done()
