# Paper tables: LaTeX + CSV + Markdown, reported values beside ours, provenance per cell.


rule table:
    input:
        table_inputs,
    output:
        tex=report(f"{RESULTS}/tables/{{table}}.tex", category="Tables"),
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
    params:
        spec=lambda wc: {"name": wc.table, **config["tables"][wc.table]},
        runs=lambda wc: table_runs(wc.table),
    log:
        f"{RESULTS}/logs/table/{{table}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/table.py"
