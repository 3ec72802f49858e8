from emorepro.steps import log_to, synth_jtes_corpus

log_to(snakemake.log[0])
synth_jtes_corpus(snakemake.params.out_dir, snakemake.params.synth)
