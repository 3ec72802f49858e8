from emorepro.steps import job_done, log_to, synthesize

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
synthesize(snakemake.input.texts, snakemake.input.manifest, snakemake.output.corpus, corpus=snakemake.wildcards.corpus,
           source=p.source, seed=p.seed, tts=p.tts, sample_rate=p.sample_rate, threads=snakemake.threads)
job_done()
