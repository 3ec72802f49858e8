from emorepro.steps import job_done, log_to, synth_spon_corpus

log_to(snakemake.log[0], snakemake.input)
synth_spon_corpus(snakemake.output.csv, snakemake.params.synth)
job_done()
