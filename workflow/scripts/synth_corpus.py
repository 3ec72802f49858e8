from emorepro.steps import job_done, log_to, synth_corpus

log_to(snakemake.log[0], snakemake.input)
synth_corpus(snakemake.params.out_dir, snakemake.params.synth)
job_done()
