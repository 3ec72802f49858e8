from emorepro.steps import demo_checkpoint, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
demo_checkpoint(snakemake.output.done, family=snakemake.params.family, manifest_csv=snakemake.input.get("manifest"),
                **snakemake.params.demo)
job_done()
