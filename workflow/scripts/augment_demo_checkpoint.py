from emorepro.steps import augment_demo_checkpoint, log_to

log_to(snakemake.log[0])
augment_demo_checkpoint(snakemake.output.done, backend=snakemake.wildcards.backend, seed=snakemake.params.seed,
                        manifest_csv=snakemake.input.get("manifest"))
