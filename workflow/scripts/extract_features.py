from emorepro.steps import extract_features, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
spec = snakemake.params.spec
extract_features(snakemake.input.manifest, snakemake.output.cache, name=snakemake.wildcards.encoder, spec=spec,
                 seed=spec["seed"])
job_done()
