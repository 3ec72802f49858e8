# Paper tables: LaTeX + CSV + Markdown, reported values beside ours, provenance per cell.
# `tables` aggregate training runs; `corpus_tables` count manifests (Lee et al. Table 1).
# Outputs are update(): a failed re-run restores the previous good outputs (see rules/corpus.smk).


rule table:
    input:
        table_inputs,
    output:
        tex=update(report(f"{RESULTS}/tables/{{table}}.tex", category="Tables")),
        csv=update(f"{RESULTS}/tables/{{table}}.csv"),
        md=update(f"{RESULTS}/tables/{{table}}.md"),
    wildcard_constraints:
        table=RUN_TABLES,
    params:
        spec=lambda wc: {"classes": config["classes"], **table_spec(wc.table)},
        runs=lambda wc: table_runs(wc.table),
        fusion=lambda wc: table_fusion(wc.table),
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
        pdf=update(report(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.pdf", category="Confusion matrices")),
        png=update(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.png"),
        tex=update(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.tex"),
        csv=update(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}.csv"),
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
        pdf=update(
            report(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.pdf", category="Confusion matrices")
        ),
        png=update(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.png"),
        tex=update(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.tex"),
        csv=update(f"{RESULTS}/figures/confusion/{{paper}}/{{variant}}/{{corpus}}.csv"),
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


rule corpus_table:
    input:
        lambda wc: sorted(corpus_table_manifests(wc.table).values()),
    output:
        tex=update(report(f"{RESULTS}/tables/{{table}}.tex", category="Tables")),
        csv=update(f"{RESULTS}/tables/{{table}}.csv"),
        md=update(f"{RESULTS}/tables/{{table}}.md"),
    wildcard_constraints:
        table=CORPUS_TABLES,
    params:
        spec=lambda wc: corpus_table_spec(wc.table),
        manifests=lambda wc: corpus_table_manifests(wc.table),
    log:
        f"{RESULTS}/logs/table/{{table}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/corpus_table.py"


rule summary:
    # What `make demo` prints at its end (summary.txt) and the report's page of every table and fusion result.
    input:
        tables=[f"{RESULTS}/tables/{t}.csv" for t in enabled_tables()],
        fusion=[f"{RESULTS}/fusion/{n}.csv" for n in enabled_fusions()],
        corpus_tables=[f"{RESULTS}/tables/{t}.csv" for t in enabled_corpus_tables()],
    output:
        txt=update(f"{RESULTS}/summary.txt"),
        html=update(report(f"{RESULTS}/summary.html", category="Summary")),
    params:
        tables={t: summary_spec(t) for t in enabled_tables()},
        fusion=enabled_fusions(),
        corpus_tables=enabled_corpus_tables(),
    log:
        f"{RESULTS}/logs/summary/summary.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/summary.py"


rule confusion_panels:
    # A paper figure of several experiments' confusion matrices, one panel each (config `figures`; Ghosh et al.
    # Fig. 2), with the bias toward one class per panel and the paper's claims about it checked (the .md).
    input:
        lambda wc: sorted({m for ms in figure_panels(wc.figure).values() for m in ms}),
    output:
        pdf=update(report(f"{RESULTS}/figures/{{figure}}.pdf", category="Figures")),
        png=update(f"{RESULTS}/figures/{{figure}}.png"),
        tex=update(f"{RESULTS}/figures/{{figure}}.tex"),
        csv=update(f"{RESULTS}/figures/{{figure}}.csv"),
        md=update(f"{RESULTS}/figures/{{figure}}.md"),
    wildcard_constraints:
        figure=FIGURES,
    params:
        panels=lambda wc: figure_panels(wc.figure),
        classes=config["classes"],
        title=lambda wc: config["figures"][wc.figure]["title"] or wc.figure,
        bias_class=lambda wc: config["figures"][wc.figure]["bias_class"],
        claims=lambda wc: config["figures"][wc.figure]["claims"],
        notes=lambda wc: figure_notes(wc.figure),
    log:
        f"{RESULTS}/logs/figures/{{figure}}.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow/scripts/confusion_panels.py"
