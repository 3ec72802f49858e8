# Config validation and the small input functions every stage uses.
import os

from snakemake.utils import validate


validate(config, schema="../config/schema.yaml")

RESULTS = config["results"]


wildcard_constraints:
    corpus=r"[A-Za-z0-9_\-]+",
    encoder=r"[A-Za-z0-9_\-]+",
    protocol=r"[A-Za-z0-9_\-]+",
    paper=r"[A-Za-z0-9_\-]+",
    variant=r"[A-Za-z0-9_\-]+",
    fold=r"\d+",
    seed=r"\d+",


def _require(cond, key, msg):
    if not cond:
        raise ValueError(f"config: {key}: {msg}")


for _name, _c in config["corpora"].items():
    _require(_c["root"] or _c["synth"], f"corpora.{_name}.root", "required (path to IEMOCAP_full_release) unless `synth` is set")
for _paper, _variants in config["experiments"].items():
    for _variant, _e in _variants.items():
        _key = f"experiments.{_paper}.{_variant}"
        _require(_e["corpus"] in config["corpora"], f"{_key}.corpus", f"{_e['corpus']!r} is not a key of corpora")
        _require(_e["protocol"] in config["protocols"], f"{_key}.protocol", f"{_e['protocol']!r} is not a key of protocols")
        for _role, _enc in _e["inputs"].items():
            _require(_enc in config["encoders"], f"{_key}.inputs.{_role}", f"{_enc!r} is not a key of encoders")
for _t, _spec in config["tables"].items():
    for _row in _spec["rows"]:
        _p, _, _v = _row["experiment"].partition("/")
        _require(_v in config["experiments"].get(_p, {}), f"tables.{_t}.rows[{_row['name']!r}].experiment",
                 f"{_row['experiment']!r} is not an experiment")


def corpus_root(corpus):
    c = config["corpora"][corpus]
    if c["synth"]:
        return f"{RESULTS}/{corpus}/synth/IEMOCAP_full_release"
    return c["root"]


def corpus_inputs(wildcards):
    """The generated demo corpus is a rule output; a real corpus is read where it lies."""
    c = config["corpora"][wildcards.corpus]
    if c["synth"]:
        return {"root": f"{corpus_root(wildcards.corpus)}/synth_summary.json"}
    return {}


def experiment(paper, variant):
    return config["experiments"][paper][variant]


def run_dir(paper, variant, fold, seed):
    e = experiment(paper, variant)
    return f"{RESULTS}/runs/{paper}/{variant}/{e['protocol']}/fold{fold}/seed{seed}"


def experiment_runs(paper, variant):
    """(fold, seed, run directory) of every run of one experiment."""
    e = experiment(paper, variant)
    n_folds = config["protocols"][e["protocol"]]["n_folds"]
    return [(k, s, run_dir(paper, variant, k, s)) for s in e["seeds"] for k in range(1, n_folds + 1)]


def train_inputs(wc):
    e = experiment(wc.paper, wc.variant)
    return {
        "manifest": f"{RESULTS}/{e['corpus']}/manifest.csv",
        "folds": f"{RESULTS}/{e['corpus']}/folds/{e['protocol']}.csv",
        **{f"cache_{role}": f"{RESULTS}/{e['corpus']}/features/{enc}/manifest.json" for role, enc in e["inputs"].items()},
    }


def table_runs(table):
    """Row name -> list of {metrics, fold, seed}: what each row of a table aggregates."""
    out = {}
    for row in config["tables"][table]["rows"]:
        paper, _, variant = row["experiment"].partition("/")
        out[row["name"]] = [{"metrics": f"{d}/metrics.json", "fold": k, "seed": s}
                            for k, s, d in experiment_runs(paper, variant)]
    return out


def table_inputs(wildcards):
    """The metrics of every run; their predictions too when the table computes bootstrap statistics."""
    metrics = {r["metrics"] for rows in table_runs(wildcards.table).values() for r in rows}
    if config["tables"][wildcards.table].get("stats"):
        metrics |= {m.replace("metrics.json", "predictions.csv") for m in metrics}
    return sorted(metrics)


def enabled_tables():
    return [t for t, spec in config["tables"].items() if spec["paper"] in config["papers"]]


def table_experiments():
    """(paper, variant) of every experiment that an enabled table shows."""
    seen = []
    for t in enabled_tables():
        for row in config["tables"][t]["rows"]:
            pv = tuple(row["experiment"].split("/", 1))
            if pv not in seen:
                seen.append(pv)
    return seen


def get_final_output():
    tables = [f"{RESULTS}/tables/{t}.tex" for t in enabled_tables()]
    figures = [f"{RESULTS}/figures/confusion/{p}/{v}.pdf" for p, v in table_experiments()]
    return tables + figures
