"""Cross-checks of the workflow config that its JSON schema cannot express.

``config/schema.yaml`` checks each key on its own (types, enums, no unknown keys, defaults).
:func:`check_config` checks what relates keys to each other or to the code: a table row naming a
missing experiment, a protocol typo, a union corpus without members, a ``model_params`` key the
model's dataclass does not have, a validation-based ``train.selection`` on a protocol without a
validation split, ...  ``rules/common.smk`` calls it once, right after the schema, so a mistake
fails ``snakemake -n`` in about a second, naming the key, before any job is planned.

It needs neither Snakemake nor torch: the model families' option names are read from their
source (:meth:`emorepro.models.ModelEntry.option_names`).  Each check is a function of the whole
(schema-validated) config that yields ``(key, message)`` problems; every problem is reported, one
line each, in a single :class:`ConfigError`.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Iterator, Mapping

Config = Mapping[str, Any]
Problems = Iterator[tuple[str, str]]

NAME = re.compile(r"[A-Za-z0-9_\-]+")   # the workflow's wildcard constraints (rules/common.smk)
VAL_SELECTIONS = ("val_uar", "val_ccc")  # train.selection values that need a validation split


class ConfigError(ValueError):
    """The config is inconsistent; the message has one ``config: <key>: <problem>`` line per problem."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("\n".join(f"config: {key}: {msg}" for key, msg in problems))


def is_union(config: Config, corpus: str) -> bool:
    return config["corpora"][corpus].get("format") == "union"


def row_experiments(row: Mapping[str, Any]) -> list[str]:
    """A table row's experiments: one "<paper>/<variant>", or a list averaged per fold and seed (none if cited)."""
    if row.get("cited"):
        return []
    x = row.get("experiment") or []   # a row of fusion cells only has none
    return [x] if isinstance(x, str) else list(x)


def experiment_id(paper: str, variant: str) -> str:
    """``<paper>_<variant>`` as a Python identifier: the suffix of per-experiment rules (``score_<id>``)."""
    return re.sub(r"\W", "_", f"{paper}_{variant}")


def _experiment(config: Config, ref: str) -> Mapping[str, Any] | None:
    paper, _, variant = ref.partition("/")
    return (config.get("experiments") or {}).get(paper, {}).get(variant)


def _experiments(config: Config) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for paper, variants in (config.get("experiments") or {}).items():
        for variant, e in variants.items():
            yield f"experiments.{paper}.{variant}", e


# ----------------------------------------------------------------------------- checks


def check_names(config: Config) -> Problems:
    """Names that become path wildcards must match the workflow's wildcard constraints."""
    groups = {"corpora": config.get("corpora"), "protocols": config.get("protocols"),
              "encoders": config.get("encoders"), "experiments": config.get("experiments"),
              "pseudo_labels": config.get("pseudo_labels")}
    for group, entries in groups.items():
        for name in entries or {}:
            if not NAME.fullmatch(name):
                yield f"{group}.{name}", "names may only use letters, digits, '_' and '-' (they become paths)"
    seen: dict[str, str] = {}
    for paper, variants in (config.get("experiments") or {}).items():
        for variant in variants:
            if not NAME.fullmatch(variant):
                yield f"experiments.{paper}.{variant}", "names may only use letters, digits, '_' and '-'"
            other = seen.setdefault(experiment_id(paper, variant), f"{paper}.{variant}")
            if other != f"{paper}.{variant}":
                yield (f"experiments.{paper}.{variant}", f"its rules would be named like those of experiments.{other} "
                       f"(*_{experiment_id(paper, variant)}): rename one")


def check_corpora(config: Config) -> Problems:
    """A union corpus has members that are native corpora with a style; a native one has a root or synth."""
    corpora, protocols = config.get("corpora") or {}, config.get("protocols") or {}
    for name, c in corpora.items():
        if c.get("format") != "union":
            if not (c.get("root") or c.get("synth") or c.get("augment")):
                yield f"corpora.{name}.root", "required (path to the corpus) unless `synth` or `augment` is set"
            continue
        if not c.get("members"):
            yield f"corpora.{name}.members", "a union corpus needs {member corpus: protocol}"
            continue
        for m, p in c["members"].items():
            key = f"corpora.{name}.members.{m}"
            if m not in corpora or is_union(config, m):
                yield key, "is not a (non-union) key of corpora"
                continue
            if p not in protocols or protocols[p].get("scheme") == "union":
                yield key, f"{p!r} is not a (non-union) key of protocols"
            if not corpora[m].get("style"):
                yield f"corpora.{m}.style", f"required for a member of the union corpus {name!r} (e.g. acted, spontaneous)"


def check_augmented_corpora(config: Config) -> Problems:
    """An augmented corpus (MMER, `corpora.<name>.augment`) is generic_csv and copies a plain corpus."""
    corpora = config.get("corpora") or {}
    for name, c in corpora.items():
        if not c.get("augment"):
            continue
        src = c["augment"].get("source")
        if src not in corpora or corpora[src].get("format") == "union" or corpora[src].get("augment"):
            yield f"corpora.{name}.augment.source", f"{src!r} is not a (non-union, non-augmented) key of corpora"
        if c.get("format") != "generic_csv":
            yield f"corpora.{name}.format", "an augmented corpus is generic_csv"


def check_experiment_augment(config: Config) -> Problems:
    """An experiment's `augment` names an augmented corpus made from the experiment's own corpus."""
    corpora = config.get("corpora") or {}
    for key, e in _experiments(config):
        aug = e.get("augment")
        if not aug:
            continue
        if not (corpora.get(aug) or {}).get("augment"):
            yield f"{key}.augment", f"{aug!r} is not an augmented corpus (a key of corpora with an `augment` block)"
        elif corpora[aug]["augment"].get("source") != e["corpus"]:
            yield (f"{key}.augment", f"{aug!r} copies {corpora[aug]['augment'].get('source')!r}, but the experiment "
                   f"trains on {e['corpus']!r}")


def check_runs_per_job(config: Config) -> Problems:
    """Several runs per job (seeds_per_job, folds_per_job: rule train_<paper>_<variant>_[folds<a>_<b>_]seeds<c>_<d>)
    pass the corpus, its folds, caches and parent runs only: an experiment that also reads augmented copies or
    frame labels trains one run per job."""
    for key, e in _experiments(config):
        for pack in ("seeds_per_job", "folds_per_job"):
            if (e.get(pack) or 1) > 1:
                for k in ("augment", "pseudo_labels"):
                    if e.get(k):
                        yield f"{key}.{pack}", f"must be 1 for an experiment with `{k}` (packed jobs do not read it)"


def check_corpus_tables(config: Config) -> Problems:
    """Corpus-statistics tables (`corpus_tables`) and result tables (`tables`) share results/tables/."""
    for t in config.get("corpus_tables") or {}:
        if t in (config.get("tables") or {}):
            yield f"corpus_tables.{t}", "a table of the same name is in `tables`"


def check_encoders(config: Config) -> Problems:
    for name, enc in (config.get("encoders") or {}).items():
        texts_from = (enc.get("demo") or {}).get("texts_from")
        if texts_from and texts_from not in (config.get("corpora") or {}):
            yield f"encoders.{name}.demo.texts_from", f"{texts_from!r} is not a key of corpora"


def check_experiments(config: Config) -> Problems:
    """Each experiment's corpus, protocol, encoders and model exist and fit together."""
    from .models import MODELS

    corpora, protocols, encoders = (config.get(k) or {} for k in ("corpora", "protocols", "encoders"))
    for key, e in _experiments(config):
        if e["corpus"] not in corpora:
            yield f"{key}.corpus", f"{e['corpus']!r} is not a key of corpora"
        if e["protocol"] not in protocols:
            yield f"{key}.protocol", f"{e['protocol']!r} is not a key of protocols"
        elif e["corpus"] in corpora and (protocols[e["protocol"]].get("scheme") == "union") != is_union(config, e["corpus"]):
            yield f"{key}.protocol", "a union corpus needs a protocol with scheme `union` (and only a union corpus)"
        for role, enc in e["inputs"].items():
            if enc not in encoders:
                yield f"{key}.inputs.{role}", f"{enc!r} is not a key of encoders"
        selection = (e.get("train") or {}).get("selection")   # the schema fills in TrainConfig's default
        if selection in VAL_SELECTIONS and e["protocol"] in protocols:
            p = protocols[e["protocol"]]
            members = corpora.get(e["corpus"], {}).get("members") or {}
            no_val = ([m for m, mp in members.items() if protocols.get(mp, {}).get("val_policy", "none") == "none"]
                      if p.get("scheme") == "union" else [e["protocol"]] * (p.get("val_policy", "none") == "none"))
            if no_val:
                yield (f"{key}.train.selection", f"{selection!r} needs a validation split, but protocol "
                       f"{no_val[0]!r} has val_policy none (use `last`, or a protocol with a validation split)")
        if e["model"] not in MODELS:
            yield f"{key}.model", f"{e['model']!r} is not a registered model ({', '.join(sorted(MODELS))})"
            continue
        entry = MODELS[e["model"]]
        if set(e["inputs"]) != set(entry.inputs):
            yield f"{key}.inputs", f"model {e['model']!r} reads the cache roles {sorted(entry.inputs)}, not {sorted(e['inputs'])}"
        options = {"model_params": e.get("model_params") or {}, "data": (e.get("train") or {}).get("data") or {},
                   "loss": (e.get("train") or {}).get("loss") or {}}
        for kind, given in options.items():
            known = entry.option_names(kind)
            for k in sorted(set(given) - set(known)):
                where = f"{key}.{kind}" if kind == "model_params" else f"{key}.train.{kind}"
                yield f"{where}.{k}", (f"model {e['model']!r} has no such option; known: {', '.join(known)}" if known
                                       else f"model {e['model']!r} takes no train.{kind} options")


def check_training_chain(config: Config) -> Problems:
    """The fine-tuning engine's keys: `train.finetune` names input roles; `train.init_from` names an
    experiment on the same corpus and folds with a run for every seed (a run starts from its parent's
    run of the same fold and seed)."""
    for key, e in _experiments(config):
        t = e.get("train") or {}
        for role in t.get("finetune") or {}:
            if role not in e["inputs"]:
                yield (f"{key}.train.finetune.{role}",
                       f"names no role of inputs ({sorted(e['inputs'])}): the role's encoder gives the checkpoint")
        parent = t.get("init_from")
        if not parent:
            continue
        pe = _experiment(config, parent)
        if pe is None:
            yield f"{key}.train.init_from", f"{parent!r} is not an experiment"
            continue
        yield from _same_runs(f"{key}.train.init_from", parent, pe, e)


def _same_runs(key: str, parent: str, pe: Mapping[str, Any], e: Mapping[str, Any]) -> Problems:
    """Experiment ``e`` reads, per fold and seed, the run of ``parent`` (experiment ``pe``) of the same fold and seed."""
    if (pe["corpus"], pe["protocol"]) != (e["corpus"], e["protocol"]):
        yield (key, f"{parent!r} runs on {pe['corpus']}/{pe['protocol']}, this experiment on "
               f"{e['corpus']}/{e['protocol']}: a run reads the same fold of the same folds")
    missing = sorted(set(e["seeds"]) - set(pe["seeds"]))
    if missing:
        yield key, f"{parent!r} has no run for seed(s) {missing}"


def check_pseudo_labels(config: Config) -> Problems:
    """A pseudo-label set clusters the encoder of an experiment that fine-tunes its `role`; an experiment reading
    a set's labels names one of its layers and runs on the source's corpus and folds, with a source run per seed."""
    sets = config.get("pseudo_labels") or {}
    for name, s in sets.items():
        src = _experiment(config, s["source"])
        if src is None:
            yield f"pseudo_labels.{name}.source", f"{s['source']!r} is not an experiment"
        elif s.get("role", "audio") not in ((src.get("train") or {}).get("finetune") or {}):
            yield (f"pseudo_labels.{name}.role", f"{s['source']!r} does not train a {s.get('role', 'audio')!r} "
                   "encoder (train.finetune): there is no run encoder to cluster")
        if len(set(s["layers"])) != len(s["layers"]) or len(set(s["ks"])) != len(s["ks"]):
            yield f"pseudo_labels.{name}", "layers and ks must not repeat a value"
    for key, e in _experiments(config):
        ref = e.get("pseudo_labels")
        if not ref:
            continue
        s = sets.get(ref["name"])
        if s is None:
            yield f"{key}.pseudo_labels.name", f"{ref['name']!r} is not a key of pseudo_labels"
            continue
        if ref["layer"] not in s["layers"]:
            yield f"{key}.pseudo_labels.layer", f"{ref['layer']} is not one of pseudo_labels.{ref['name']}.layers {s['layers']}"
        src = _experiment(config, s["source"])
        if src is None:
            continue
        yield from _same_runs(f"{key}.pseudo_labels", f"{s['source']} (the labels' source)", src, e)


def check_fusion(config: Config) -> Problems:
    """A fusion set's experiments exist and share corpus and protocol (their runs are trials of the same folds)."""
    for name, f in (config.get("fusion") or {}).items():
        found = []
        for x in f["experiments"]:
            e = _experiment(config, x)
            if e is None:
                yield f"fusion.{name}.experiments", f"{x!r} is not an experiment"
            else:
                found.append((x, e))
        if len({(e["corpus"], e["protocol"]) for _, e in found}) > 1:
            yield (f"fusion.{name}.experiments", "trials must share corpus and protocol: "
                   + ", ".join(f"{x} ({e['corpus']}, {e['protocol']})" for x, e in found))


def check_tables(config: Config) -> Problems:
    """Rows name experiments; compare_to, a row's columns, headline and stats.columns name what the table has."""
    for t, spec in (config.get("tables") or {}).items():
        columns = {c["name"] for c in spec.get("columns", [])}
        rows = {r["name"] for r in spec.get("rows", [])}
        for i, row in enumerate(spec.get("rows", [])):
            key = f"tables.{t}.rows[{row['name']!r}]"
            if row.get("cited") and row.get("experiment"):
                yield f"{key}.experiment", "a cited row (not reproduced) names no experiment"
            for k in sorted(set(row.get("labels") or {}) - set(spec.get("label_columns") or [])):
                yield f"{key}.labels.{k}", f"is not one of the table's label_columns ({spec.get('label_columns') or []})"
            for x in row_experiments(row):
                if _experiment(config, x) is None:
                    yield f"{key}.experiment", f"{x!r} is not an experiment"
            fset = (row.get("fusion") or {}).get("set")
            if fset is not None and fset not in (config.get("fusion") or {}):
                yield f"{key}.fusion.set", f"{fset!r} is not a fusion set"
            if not (row_experiments(row) or row.get("fusion") or row.get("cited")
                    or any(c.get("fusion") for c in spec.get("columns", []))):
                yield key, "needs an experiment, a fusion set (fusion.set) or `cited`"
            for c in sorted(set(row.get("columns") or []) - columns):
                yield f"{key}.columns", f"{c!r} is not a column of the table ({', '.join(sorted(columns))})"
            if row.get("compare_to") and row["compare_to"] not in rows:
                yield f"{key}.compare_to", f"{row['compare_to']!r} is not a row of the table"
            for c in sorted(set(row.get("reported") or {}) - columns):
                yield f"{key}.reported", f"{c!r} is not a column of the table ({', '.join(sorted(columns))})"
        for c in spec.get("columns", []):
            fset = (c.get("fusion") or {}).get("set")
            if fset is not None and fset not in (config.get("fusion") or {}):
                yield f"tables.{t}.columns[{c['name']!r}].fusion.set", f"{fset!r} is not a fusion set"
        h = spec.get("headline")
        if h and h["row"] not in rows:
            yield f"tables.{t}.headline.row", f"{h['row']!r} is not a row of the table"
        if h and h["column"] not in columns:
            yield f"tables.{t}.headline.column", f"{h['column']!r} is not a column of the table"
        for c in sorted(set((spec.get("stats") or {}).get("columns") or []) - columns):
            yield f"tables.{t}.stats.columns", f"{c!r} is not a column of the table ({', '.join(sorted(columns))})"


def check_figures(config: Config) -> Problems:
    """A multi-panel figure's panels name experiments, its claims name panels, its bias class is a class."""
    for f, spec in (config.get("figures") or {}).items():
        names = [p["name"] for p in spec.get("panels", [])]
        if len(set(names)) != len(names):
            yield f"figures.{f}.panels", f"duplicate panel names {names}"
        for p in spec.get("panels", []):
            if _experiment(config, p["experiment"]) is None:
                yield f"figures.{f}.panels[{p['name']!r}].experiment", f"{p['experiment']!r} is not an experiment"
        for i, c in enumerate(spec.get("claims") or []):
            for side in ("lower", "higher"):
                if c[side] not in names:
                    yield f"figures.{f}.claims[{i}].{side}", f"{c[side]!r} is not a panel ({', '.join(names)})"
        if spec.get("bias_class", "neu") not in (config.get("classes") or []):
            yield f"figures.{f}.bias_class", f"{spec.get('bias_class')!r} is not one of classes {config.get('classes')}"


def check_papers(config: Config) -> Problems:
    """Each entry of `papers` is the paper of some table, corpus table or fusion set (else a typo builds nothing)."""
    known = {s["paper"] for group in ("tables", "corpus_tables", "fusion", "figures")
             for s in (config.get(group) or {}).values()}
    for p in config.get("papers") or []:
        if p not in known:
            yield "papers", f"{p!r} has no table or fusion set (papers with some: {', '.join(sorted(known))})"


def schema_problems(config: Config, schema: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The config's JSON-schema violations as ``(dotted key, message)``, one line each.

    Snakemake's own ``validate`` (which also fills in the defaults) reports only the first error,
    with the whole sub-schema; this names the key: ``experiments.zhang2022.baseline_act.train.lrr``.
    """
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    out = []
    for err in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            allowed = set(err.schema.get("properties", {}))
            pattern_ok = err.schema.get("patternProperties")
            for extra in sorted(k for k in err.instance if k not in allowed and not pattern_ok):
                known = ", ".join(err.schema.get("properties", {}))
                out.append((f"{key}.{extra}" if err.absolute_path else extra,
                            f"unknown key; known: {known}" if known else "unknown key"))
            continue
        if err.validator == "enum":
            out.append((key, f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"))
            continue
        out.append((key, err.message))
    return out


def check_schema(config: Config, schema_yaml: str) -> None:
    """Raise :class:`ConfigError` naming every key that breaks ``schema_yaml`` (config/schema.yaml)."""
    import yaml

    with open(schema_yaml) as f:
        problems = schema_problems(config, yaml.safe_load(f))
    if problems:
        raise ConfigError(problems)


CHECKS: tuple[Callable[[Config], Problems], ...] = (
    check_names, check_corpora, check_augmented_corpora, check_encoders, check_experiments, check_training_chain,
    check_pseudo_labels, check_fusion, check_tables, check_corpus_tables, check_papers, check_experiment_augment, check_figures,
    check_runs_per_job)


def check_config(config: Config, workdir: str | None = None) -> None:
    """Run every cross-check on a schema-validated config; raise :class:`ConfigError` listing all problems.

    Then the checks of what the config points at (:func:`emorepro.preflight.check_config`: root and
    synth, classes against the label maps, checkpoint directories that must exist under ``workdir``)."""
    from .preflight import check_config as preflight

    problems = [p for check in CHECKS for p in check(config)]
    if problems:
        raise ConfigError(problems)
    preflight(config, workdir)
