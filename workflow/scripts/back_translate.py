from emorepro.steps import back_translate, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
back_translate(snakemake.input.manifest, snakemake.output.texts, corpus=snakemake.wildcards.corpus, source=p.source,
               seed=p.seed, back_translation=p.back_translation, threads=snakemake.threads)
job_done()
