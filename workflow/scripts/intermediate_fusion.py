from emorepro.steps import intermediate_fusion, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
intermediate_fusion(p.trials, manifest_csv=snakemake.input.manifest, classes=p.classes, out_csv=snakemake.output.csv,
                    out_json=snakemake.output.json, name=snakemake.wildcards.name, corpus=p.corpus, options=p.options,
                    threads=snakemake.threads)
job_done()
