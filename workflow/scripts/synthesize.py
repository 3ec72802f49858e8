from emorepro.steps import log_to, synthesize

log_to(snakemake.log[0])
p = snakemake.params
synthesize(snakemake.input.texts, snakemake.input.manifest, snakemake.output.corpus, corpus=snakemake.wildcards.corpus,
           source=p.source, seed=p.seed, tts=p.tts, sample_rate=p.sample_rate, threads=snakemake.threads)
