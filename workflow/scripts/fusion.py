from emorepro.steps import fusion, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
fusion(p.trials, ks=p.ks, honest_ks=p.honest_ks, out_csv=snakemake.output.csv, out_json=snakemake.output.json,
       threads=snakemake.threads, name=snakemake.wildcards.name, corpus=p.corpus, heuristics=p.heuristics,
       honest_method=p.honest_method, max_hours=p.max_hours)
job_done()
