# Config validation and the small input functions every stage uses.
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

from snakemake.utils import validate

# This clone's code, in this process and in every job it starts: a venv shared by several clones has
# its editable install pointing at one of them (emorepro.provenance.check_code_origin refuses a miss).
EMOREPRO_SRC = str(Path(workflow.main_snakefile).resolve().parent / "src")
sys.path.insert(0, EMOREPRO_SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join([EMOREPRO_SRC, *filter(None, [os.environ.get("PYTHONPATH")])]), EMOREPRO_SRC=EMOREPRO_SRC
)  # set, not read: no `envvars:` assertion needed
from emorepro.config import check_config, check_schema, experiment_id, row_experiments
from emorepro.config import is_union as _is_union

check_schema(config, f"{workflow.basedir}/config/schema.yaml")  # every bad key, one line each
validate(config, schema="../config/schema.yaml")  # fills in the defaults
# What the schema cannot say: keys naming each other, model options, and (emorepro.preflight) what the config
# points at: root vs synth, classes vs label maps, checkpoint directories.
check_config(config, workdir=os.getcwd())

RESULTS = config["results"]


wildcard_constraints:
    corpus=r"[A-Za-z0-9_\-]+",
    encoder=r"[A-Za-z0-9_\-]+",
    protocol=r"[A-Za-z0-9_\-]+",
    paper=r"[A-Za-z0-9_\-]+",
    variant=r"[A-Za-z0-9_\-]+",
    fold=r"\d+",
    seed=r"\d+",


def is_union(corpus):
    """A union corpus (format: union) is built from its members' manifests, folds and caches."""
    return _is_union(config, corpus)


def _names_regex(names):
    return "|".join(re.escape(n) for n in names) or "(?!)"  # (?!) matches nothing


NATIVE_CORPORA = _names_regex(n for n in config["corpora"] if not is_union(n))
UNION_CORPORA = _names_regex(n for n in config["corpora"] if is_union(n))


from emorepro.preflight import resolve_checkpoint


def corpus_root(corpus):
    c = config["corpora"][corpus]
    if c.get("augment"):  # made by rule synthesize (rules/augment.smk)
        return f"{RESULTS}/{corpus}/tts/corpus.csv"
    if c["synth"] and c["format"] == "generic_csv":
        return f"{RESULTS}/{corpus}/synth/generic_csv/corpus.csv"
    if c["synth"] and c["format"] == "jtes":
        return f"{RESULTS}/{corpus}/synth/jtes_v1.1"
    if c["synth"]:
        return f"{RESULTS}/{corpus}/synth/IEMOCAP_full_release"
    return c["root"]


def corpus_inputs(wildcards):
    """The generated demo corpus is a rule output; a real corpus is read where it lies."""
    c = config["corpora"][wildcards.corpus]
    if (c["synth"] and c["format"] == "generic_csv") or c.get("augment"):
        return {"root": corpus_root(wildcards.corpus)}
    if c["synth"]:
        return {"root": f"{corpus_root(wildcards.corpus)}/synth_summary.json"}
    return {}


def union_inputs(kind):
    """Input function of a union corpus's rules: its members' manifests or fold files, in member order."""

    def inputs(wildcards):
        members = config["corpora"][wildcards.corpus]["members"]
        if kind == "manifests":
            return {"manifests": [f"{RESULTS}/{m}/manifest.csv" for m in members]}
        return {"folds": [f"{RESULTS}/{m}/folds/{p}.csv" for m, p in members.items()]}

    return inputs


def feature_cache(corpus, encoder):
    """A corpus's cache manifest; a union corpus reads its members' caches (never extracted twice)."""
    if is_union(corpus):
        return [f"{RESULTS}/{m}/features/{encoder}/manifest.json" for m in config["corpora"][corpus]["members"]]
    return f"{RESULTS}/{corpus}/features/{encoder}/manifest.json"


def encoder_spec(name):
    """An encoder's config; a demo encoder's checkpoint is the directory its rule writes."""
    spec = dict(config["encoders"][name])
    if spec.get("demo"):
        spec["checkpoint"] = f"{RESULTS}/checkpoints/demo/{name}"
    else:  # a local directory, made absolute: never looked up on a model hub
        spec["checkpoint"] = resolve_checkpoint(spec.get("checkpoint"))
    return spec


def extraction_inputs(wildcards):
    inputs = {"manifest": f"{RESULTS}/{wildcards.corpus}/manifest.csv"}
    if config["encoders"][wildcards.encoder].get("demo"):
        inputs["checkpoint"] = f"{RESULTS}/checkpoints/demo/{wildcards.encoder}/demo_checkpoint.json"
    return inputs


def demo_checkpoint_inputs(wildcards):
    texts_from = config["encoders"][wildcards.encoder]["demo"]["texts_from"]
    return {"manifest": f"{RESULTS}/{texts_from}/manifest.csv"} if texts_from else {}


def experiment(paper, variant):
    return config["experiments"][paper][variant]


def all_experiments():
    """(paper, variant) of every configured experiment."""
    return [(p, v) for p, variants in config["experiments"].items() for v in variants]


def experiment_by_key(key):
    """The experiment "<paper>/<variant>"."""
    paper, _, variant = key.partition("/")
    return experiment(paper, variant)


def experiment_rule_name(kind, paper, variant):
    """Name of a per-experiment rule: score_<paper>_<variant> ('-' becomes '_'; check_config keeps them unique)."""
    return f"{kind}_{experiment_id(paper, variant)}"


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
    finetune = e["train"].get("finetune") or {}  # roles encoded on the fly: their checkpoint, not a cache
    inputs = {
        "manifest": f"{RESULTS}/{e['corpus']}/manifest.csv",
        "folds": f"{RESULTS}/{e['corpus']}/folds/{e['protocol']}.csv",
        **{
            f"cache_{role}": feature_cache(e["corpus"], enc)
            for role, enc in e["inputs"].items()
            if role not in finetune
        },
    }
    for role in finetune:
        if config["encoders"][e["inputs"][role]].get("demo"):
            inputs[f"checkpoint_{role}"] = f"{RESULTS}/checkpoints/demo/{e['inputs'][role]}/demo_checkpoint.json"
    # MMER's ACL: the augmented corpus's manifest, copies sidecar and caches (rules/augment_common.smk)
    if e.get("augment"):
        inputs.update(augment_inputs(e["augment"], {r: enc for r, enc in e["inputs"].items() if r not in finetune}))
    if e["train"].get("init_from"):  # a run starts from its parent's run of the same fold and seed
        paper, _, variant = e["train"]["init_from"].partition("/")
        inputs["parent_model"] = f"{run_dir(paper, variant, wc.fold, wc.seed)}/model.pt"
    if e.get("pseudo_labels"):  # extra_<name>: a file the recipe reads as ctx.extra_inputs[<name>]
        inputs["extra_pseudo_labels"] = pseudo_labels_path(e["pseudo_labels"], wc.fold, wc.seed)
    return inputs


def table_spec(table):
    """The table's config with {corpora.<key>.name} filled in (row names, title, notes), a note per JTES
    corpus its runs use saying which speakers form its sessions (the paper does not say), and the notes on
    the augmented copies its runs train on."""
    from emorepro.tables import augmentation_notes, fill_corpus_names, session_notes

    spec = fill_corpus_names({"name": table, **config["tables"][table]}, config["corpora"])
    t = config["tables"][table]
    xs = [x for r in t["rows"] for x in row_experiments(r)]
    xs += [x for f in table_fusion(table) for x in config["fusion"][f]["experiments"]]
    used = [experiment_by_key(x)["corpus"] for x in dict.fromkeys(xs)]
    spec["notes"] = [*spec["notes"], *session_notes(used, config["corpora"])]
    return augmentation_notes(spec, config)


def summary_spec(table):
    """Title and headline cell ({row, column} with corpus names filled in, or None) of a table, for the summary."""
    spec, rows = table_spec(table), config["tables"][table]["rows"]
    h = config["tables"][table]["headline"]
    if h:
        h = {"row": spec["rows"][[r["name"] for r in rows].index(h["row"])]["name"], "column": h["column"]}
    return {"title": spec.get("title", ""), "headline": h}


def table_runs(table):
    """Row name -> list of {metrics, fold, seed, experiment}: what each row of a table aggregates."""
    out = {}
    for row in table_spec(table)["rows"]:
        out[row["name"]] = []
        for x in row_experiments(row):
            paper, _, variant = x.partition("/")
            sel = experiment(paper, variant)["train"].get("selection") or ""  # an oracle marks the row's cells
            out[row["name"]] += [
                {"metrics": f"{d}/metrics.json", "fold": k, "seed": s, "experiment": x, "selection": sel}
                for k, s, d in experiment_runs(paper, variant)
            ]
    return out


def table_inputs(wildcards):
    """The metrics of every run; their predictions too when the table computes bootstrap statistics; the
    outputs of the fusion sets its rows name (fusion cells)."""
    metrics = {r["metrics"] for rows in table_runs(wildcards.table).values() for r in rows}
    if config["tables"][wildcards.table].get("stats"):
        metrics |= {m.replace("metrics.json", "predictions.csv") for m in metrics}
    for f in table_fusion(wildcards.table).values():
        metrics |= {p for k, p in f.items() if k in ("csv", "json", "intermediate_csv", "intermediate_json") and p}
    return sorted(metrics)


def fusion_outputs(name):
    """A fusion set's output files and its experiments' selections (for the table's fusion cells)."""
    f = config["fusion"][name]
    inter = f.get("intermediate") is not None
    return {
        "name": name,
        "csv": f"{RESULTS}/fusion/{name}.csv",
        "json": f"{RESULTS}/fusion/{name}.json",
        "intermediate_csv": f"{RESULTS}/fusion_intermediate/{name}.csv" if inter else "",
        "intermediate_json": f"{RESULTS}/fusion_intermediate/{name}.json" if inter else "",
        "selections": sorted({experiment_by_key(x)["train"].get("selection") or "" for x in f["experiments"]}),
    }


def table_fusion(table):
    """Fusion set -> its outputs, for every set a row or a column of the table names (fusion.set)."""
    t = config["tables"][table]
    sets = [(x.get("fusion") or {}).get("set") for x in [*t["rows"], *t["columns"]]]
    return {s: fusion_outputs(s) for s in dict.fromkeys(x for x in sets if x)}


def enabled_tables():
    return [t for t, spec in config["tables"].items() if spec["paper"] in config["papers"]]


def table_experiments():
    """(paper, variant) of every experiment that an enabled table shows (with its confusion figures)."""
    seen = []
    for t in enabled_tables():
        if not config["tables"][t].get("confusion_figures", True):
            continue
        for row in config["tables"][t]["rows"]:
            for x in row_experiments(row):
                pv = tuple(x.split("/", 1))
                if pv not in seen:
                    seen.append(pv)
    return seen


def fusion_trials(name):
    """Trial name -> run directories (fold order): each (experiment, seed) of the set is one trial."""
    trials = {}
    for x in config["fusion"][name]["experiments"]:
        paper, _, variant = x.partition("/")
        for seed in experiment(paper, variant)["seeds"]:
            runs = [d for k, s, d in experiment_runs(paper, variant) if s == seed]
            trials[f"{variant}/seed{seed}"] = runs
    return trials


def fusion_inputs(wildcards):
    return sorted(f"{d}/predictions.csv" for runs in fusion_trials(wildcards.name).values() for d in runs)


RUN_TABLES = _names_regex(config["tables"])
CORPUS_TABLES = _names_regex(config.get("corpus_tables", {}))


def corpus_table_spec(table):
    """A corpus table's config: names filled, checked against `corpora`, session notes added."""
    from emorepro.tables import corpus_table_spec as spec

    return spec(table, config["corpus_tables"][table], config["corpora"])


def corpus_table_manifests(table):
    """Corpus -> its manifest, for every column of a corpus table."""
    return {c["corpus"]: f"{RESULTS}/{c['corpus']}/manifest.csv" for c in config["corpus_tables"][table]["columns"]}


for _t in config.get("corpus_tables", {}):
    corpus_table_spec(_t)  # config errors (unknown corpus, reported keys, class names) stop the parse


def enabled_corpus_tables():
    return [t for t, spec in config.get("corpus_tables", {}).items() if spec["paper"] in config["papers"]]


def enabled_fusions():
    return [n for n, f in config["fusion"].items() if f["paper"] in config["papers"]]


FIGURES = _names_regex(config.get("figures", {}))


def enabled_figures():
    return [f for f, spec in config.get("figures", {}).items() if spec["paper"] in config["papers"]]


def figure_panels(figure):
    """Panel name -> the metrics.json of every run of the panel's experiment (config figures.<name>.panels)."""
    out = {}
    for p in config["figures"][figure]["panels"]:
        paper, _, variant = p["experiment"].partition("/")
        out[p["name"]] = [f"{d}/metrics.json" for _, _, d in experiment_runs(paper, variant)]
    return out


def figure_notes(figure):
    """A figure's notes, with how its experiments' augmented copies were made (as the tables say it)."""
    from emorepro.tables import augmentation_notes

    spec = config["figures"][figure]
    rows = [{"name": p["name"], "experiment": p["experiment"]} for p in spec["panels"]]
    return augmentation_notes({"rows": rows, "notes": spec["notes"]}, config)["notes"]


def get_final_output():
    tables = [f"{RESULTS}/tables/{t}.tex" for t in enabled_tables()]
    tables += [f"{RESULTS}/tables/{t}.tex" for t in enabled_corpus_tables()]
    figures = [f"{RESULTS}/figures/confusion/{p}/{v}.pdf" for p, v in table_experiments()]
    # A union corpus's runs test on each member: one confusion matrix per member corpus too.
    figures += [
        f"{RESULTS}/figures/confusion/{p}/{v}/{m}.pdf"
        for p, v in table_experiments()
        if is_union(experiment(p, v)["corpus"])
        for m in config["corpora"][experiment(p, v)["corpus"]]["members"]
    ]
    figures += [f"{RESULTS}/figures/{f}.pdf" for f in enabled_figures()]
    fusion = [f"{RESULTS}/fusion/{n}.csv" for n in enabled_fusions()]
    fusion += [
        f"{RESULTS}/fusion_intermediate/{n}.csv"
        for n in enabled_fusions()
        if config["fusion"][n].get("intermediate") is not None
    ]
    figures += [f"{RESULTS}/figures/fusion/{f}.pdf" for f in enabled_fusion_figures()]
    return tables + figures + fusion + [f"{RESULTS}/summary.txt"]


# --- training engine (issue 12): fine-tuned roles, init_from parents, per-experiment resources ---


def _train_resource(key, default):
    """A train job's resource: the experiment's `resources.<key>` (measured; see config comments), else the default."""

    def get(wc):
        v = (experiment(wc.paper, wc.variant).get("resources") or {}).get(key)
        return default if v is None else v

    return get


def init_from_parents():
    """Experiments that another experiment starts from (train.init_from): their runs keep their weights."""
    return {
        x["train"]["init_from"]
        for vs in config["experiments"].values()
        for x in vs.values()
        if x["train"].get("init_from")
    }


def pseudo_labels_path(ref, fold, seed):
    """The frame labels of pseudo-label set ref["name"] at layer ref["layer"] for one fold and seed."""
    return f"{RESULTS}/pseudo_labels/{ref['name']}/fold{fold}/seed{seed}/layer{ref['layer']}.npz"


def pseudo_label_inputs(name):
    """Input function of set `name`: the source run's model.pt (same fold and seed), and the manifest and
    fold file it trained on."""

    def get(wc):
        paper, _, variant = config["pseudo_labels"][name]["source"].partition("/")
        e = experiment(paper, variant)
        return {
            "model": f"{run_dir(paper, variant, wc.fold, wc.seed)}/model.pt",
            "manifest": f"{RESULTS}/{e['corpus']}/manifest.csv",
            "folds": f"{RESULTS}/{e['corpus']}/folds/{e['protocol']}.csv",
        }

    return get


def pseudo_label_outputs(name):
    """Set `name`'s label files of one job: every layer (group_layers: one encoder pass) or one ({layer})."""
    s = config["pseudo_labels"][name]
    layers = s["layers"] if s.get("group_layers") else ["{layer}"]
    return [pseudo_labels_path({"name": name, "layer": L}, "{fold}", "{seed}") for L in layers]


def pseudo_label_resource(name, key, default):
    v = (config["pseudo_labels"][name].get("resources") or {}).get(key)
    return default if v is None else v


def keeps_model(paper, variant):
    """Runs another step starts from (init_from) or clusters (a pseudo-label set's source) keep their weights."""
    sources = {s["source"] for s in (config.get("pseudo_labels") or {}).values()}
    return f"{paper}/{variant}" in init_from_parents() | sources


def train_params(wc):
    """The experiment's `train`, completed where the workflow knows more than the experiment:
    the checkpoint of each fine-tuned role (from encoders.<inputs.role>), and keep_model for parents."""
    e = experiment(wc.paper, wc.variant)
    t = dict(e["train"])
    t["finetune"] = {
        role: {
            "checkpoint": encoder_spec(e["inputs"][role])["checkpoint"],
            "family": config["encoders"][e["inputs"][role]]["family"],
            **(opts or {}),
        }
        for role, opts in (t.get("finetune") or {}).items()
    }
    if keeps_model(wc.paper, wc.variant):
        t["keep_model"] = True
    return t


# Backends that run a neural network: only their extraction asks for a GPU (a filterbank needs none).
NEURAL_BACKENDS = ("transformers", "fairseq2")


def _neural(wc):
    return config["encoders"][wc.encoder]["backend"] in NEURAL_BACKENDS


# --- several runs per training job (experiments.<paper>.<variant>.seeds_per_job, folds_per_job) ---


def seed_chunks(paper, variant):
    """The experiment's seeds in consecutive groups of `seeds_per_job` (default 1: one job per seed)."""
    e = experiment(paper, variant)
    n = e.get("seeds_per_job") or 1
    return [e["seeds"][i : i + n] for i in range(0, len(e["seeds"]), n)]


def fold_chunks(paper, variant):
    """The protocol's folds in consecutive groups of `folds_per_job`; [None] (default 1): one fold per job,
    the {fold} wildcard of the packed rule."""
    e = experiment(paper, variant)
    n, n_folds = e.get("folds_per_job") or 1, config["protocols"][e["protocol"]]["n_folds"]
    if n == 1:
        return [None]
    folds = list(range(1, n_folds + 1))
    return [folds[i : i + n] for i in range(0, n_folds, n)]


def packed_experiments():
    """(paper, variant) of the experiments that train several runs per job: more than one seed with
    seeds_per_job > 1 (an overlay that leaves one seed, as the end-to-end tests' does, keeps the one-seed
    jobs), or folds_per_job > 1."""
    return [(p, v) for p, v in all_experiments() if len(seed_chunks(p, v)[0]) > 1 or fold_chunks(p, v) != [None]]


def packed_job_label(folds, seeds):
    """What a packed job trains, seeds<a>_<b> (one fold: the {fold} wildcard) or folds<a>_<b>_seeds<c>_<d>,
    the end of its name."""
    label = f"seeds{seeds[0]}_{seeds[-1]}"
    return label if folds is None else f"folds{folds[0]}_{folds[-1]}_{label}"


def packed_rule_name(paper, variant, folds, seeds):
    """train_<paper>_<variant>_<label>, the name of a packed job's own rule (preferred over `train`)."""
    return f"{experiment_rule_name('train', paper, variant)}_{packed_job_label(folds, seeds)}"


def packed_log_name(folds, seeds):
    """A packed job's log (and benchmark) name: its label, led by the fold of a one-fold job."""
    return ("fold{fold}_" if folds is None else "") + packed_job_label(folds, seeds)


def packed_runs(folds, seeds):
    """params.runs of a packed job: its (fold, seed) pairs, in the order of its outputs (fold-major)."""
    if folds is None:
        return lambda wc: [[int(wc.fold), s] for s in seeds]
    return [[k, s] for k in folds for s in seeds]


def packed_run_files(paper, variant, folds, seeds, name):
    """The file `name` of each run of the job (fold-major; folds None: the {fold} wildcard)."""
    e = experiment(paper, variant)
    return [
        f"{RESULTS}/runs/{paper}/{variant}/{e['protocol']}/fold{k}/seed{s}/{name}"
        for k in (["{fold}"] if folds is None else folds)
        for s in seeds
    ]


def packed_train_inputs(paper, variant, folds, seeds):
    """Input function of a packed training job: the one-run job's inputs (the same for each of its folds:
    the corpus, its fold file and caches), and the parent run of every (fold, seed)."""

    def inputs(wc):
        ks = [int(wc.fold)] if folds is None else folds
        per_fold = [
            dict(train_inputs(SimpleNamespace(paper=paper, variant=variant, fold=k, seed=seeds[0]))) for k in ks
        ]
        one = per_fold[0]
        for key, value in one.items():
            other = next((f[key] for f in per_fold if f[key] != value), None)
            if key != "parent_model" and other is not None:
                raise ValueError(
                    f"experiments.{paper}.{variant}.folds_per_job: input {key!r} differs between folds "
                    f"({value} vs {other}); train one fold per job"
                )
        init = experiment(paper, variant)["train"].get("init_from")
        if init:
            p, _, v = init.partition("/")
            one["parent_model"] = [f"{run_dir(p, v, k, s)}/model.pt" for k in ks for s in seeds]
        return one

    return inputs


def packed_train_params(paper, variant):
    """params.train of a packed training job (train_params does not depend on the fold or the seed)."""
    return train_params(SimpleNamespace(paper=paper, variant=variant))


def packed_resource(paper, variant, key, default, n_runs=1):
    """A packed job's resource: the experiment's per-run value (runtime: times the runs it trains)."""
    v = _train_resource(key, default)(SimpleNamespace(paper=paper, variant=variant))
    return v * n_runs if key == "runtime" else v


# --- Lee et al.: intermediate concatenation and confusion figures of fusion outputs ---

INTERMEDIATE_SETS = _names_regex(n for n, f in config["fusion"].items() if f.get("intermediate") is not None)


def intermediate_inputs(wildcards):
    """The trials' predictions (their runs' embeddings.npz lie beside them) and the corpus manifest."""
    f = config["fusion"][wildcards.name]
    corpus = experiment_by_key(f["experiments"][0])["corpus"]
    return {"manifest": f"{RESULTS}/{corpus}/manifest.csv", "predictions": fusion_inputs(wildcards)}


def enabled_fusion_figures():
    return [n for n, f in config.get("fusion_figures", {}).items() if f["paper"] in config["papers"]]


for _f, _spec in config.get("fusion_figures", {}).items():
    if _spec["fusion"] not in config["fusion"]:
        raise ValueError(f"config: fusion_figures.{_f}.fusion: {_spec['fusion']!r} is not a fusion set")
