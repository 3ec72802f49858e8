from emorepro.steps import ingest, job_done, log_to

log_to(snakemake.log[0], snakemake.input)
p = snakemake.params
ingest(p.root, snakemake.output.manifest, fmt=p.format, label_map=p.label_map, drop_labels=p.drop_labels,
       sample_rate=p.sample_rate, expected_counts=p.expected_counts, sessions=p.sessions, sentences=p.sentences,
       encoding=p.encoding)
job_done()
