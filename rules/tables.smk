# Paper tables: LaTeX + CSV + Markdown, reported values beside ours, provenance per cell.


rule table:
    input:
        table_inputs,
    output:
        tex=report(f"{RESULTS}/tables/{{table}}.tex", category="Tables"),
        csv=f"{RESULTS}/tables/{{table}}.csv",
        md=f"{RESULTS}/tables/{{table}}.md",
    params:
        spec=lambda wc: {"classes": config["classes"], **table_spec(wc.table)},
        runs=lambda wc: table_runs(wc.table),
    log:
        f"{RESULTS}/logs/table/{{table}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/table.py"


rule confusion:
    input:
        metrics=lambda wc: [f"{d}/metrics.json" for _, _, d in experiment_runs(wc.paper, wc.variant)],
    output:
        pdf=report(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.pdf", category="Confusion matrices"),
        png=f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.png",
        tex=f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.tex",
        csv=f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.csv",
    params:
        classes=config["classes"],
        title=lambda wc: f"{wc.paper} / {wc.variant}: test predictions pooled over all folds and seeds",
        corpus=None,
    log:
        f"{RESULTS}/logs/confusion/{{paper}}/{{variant}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/confusion.py"


rule confusion_by_corpus:
    # A union corpus's runs (Zhang et al.: ACT+SPON) test on each member: one matrix per member.
    input:
        metrics=lambda wc: [f"{d}/metrics.json" for _, _, d in experiment_runs(wc.paper, wc.variant)],
    output:
        pdf=report(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.pdf", category="Confusion matrices"),
        png=f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.png",
        tex=f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.tex",
        csv=f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.csv",
    params:
        classes=config["classes"],
        title=lambda wc: f"{wc.paper} / {wc.variant}, {wc.corpus} test utterances: pooled over all folds and seeds",
        corpus=lambda wc: wc.corpus,
    log:
        f"{RESULTS}/logs/confusion/{{paper}}/{{variant}}/{{corpus}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/confusion.py"


rule summary:
    # What `make demo` prints at its end (summary.txt) and the report's page of every table and fusion result.
    input:
        tables=[f"{RESULTS}/tables/{t}.csv" for t in enabled_tables()],
        fusion=[f"{RESULTS}/fusion/{n}.csv" for n in enabled_fusions()],
    output:
        txt=f"{RESULTS}/summary.txt",
        html=report(f"{RESULTS}/summary.html", category="Summary"),
    params:
        tables={t: summary_spec(t) for t in enabled_tables()},
        fusion=enabled_fusions(),
    log:
        f"{RESULTS}/logs/summary/summary.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/summary.py"
