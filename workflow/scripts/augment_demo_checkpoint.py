from emorepro.steps import augment_demo_checkpoint, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
augment_demo_checkpoint(snakemake.output.done, backend=snakemake.wildcards.backend, seed=snakemake.params.seed,
                        manifest_csv=snakemake.input.get("manifest"))
job_done()
