from emorepro.steps import fusion, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
fusion(snakemake.params.trials, ks=snakemake.params.ks, honest_ks=snakemake.params.honest_ks,
       out_csv=snakemake.output.csv, out_json=snakemake.output.json, threads=snakemake.threads)
job_done()
