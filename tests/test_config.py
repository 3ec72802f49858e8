"""The config's cross-checks (emorepro.config) and the torch-free option names, without running Snakemake."""
from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys

import pytest
import yaml

from emorepro.config import ConfigError, check_config, schema_problems
from emorepro.io import InputError
from emorepro.models import MODELS
from tests.workflow_utils import REPO


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.fixture(scope="module")
def schema() -> dict:
    return _load("schema.yaml")


@pytest.fixture(scope="module")
def demo_config(schema) -> dict:
    """config.yaml with demo.yaml merged over it and the schema's defaults filled in, as the workflow sees it."""
    from snakemake.utils import update_config, validate

    cfg = _load("config.yaml")
    update_config(cfg, _load("demo.yaml"))
    validate(cfg, str(REPO / "config" / "schema.yaml"))
    return cfg


@pytest.fixture
def cfg(demo_config) -> dict:
    """A private copy in which no two keys share a dict (YAML anchors do, and so would a deepcopy)."""
    return json.loads(json.dumps(demo_config))


def problems(cfg) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    return e.value.problems


def keys(cfg) -> list[str]:
    return [k for k, _ in problems(cfg)]


def test_the_shipped_configs_pass(cfg, schema, tmp_path):
    check_config(cfg)
    real = _load("config.yaml")
    assert schema_problems(real, schema) == []
    # What is left to fill in are the corpus roots of the enabled papers (and the checkpoints, which must exist).
    with pytest.raises(InputError, match=r"^config: corpora\.\w+\.root: still the placeholder"):
        check_config(real, workdir=tmp_path)
    for name, c in real["corpora"].items():
        if (c.get("root") or "").startswith("PLACEHOLDER"):
            c["root"] = str(tmp_path / name)
    for enc in real["encoders"].values():
        if enc.get("checkpoint"):
            (tmp_path / enc["checkpoint"]).mkdir(parents=True, exist_ok=True)
    check_config(real, workdir=tmp_path)


# ----------------------------------------------------------------------------- one test per check


def test_table_row_naming_a_missing_experiment(cfg):
    cfg["tables"]["zhang2022_table4"]["rows"][0]["experiment"] = "zhang2022/baseline_typo"
    (key, msg), = problems(cfg)
    assert key == "tables.zhang2022_table4.rows['Baseline (ACT)'].experiment"
    assert "'zhang2022/baseline_typo' is not an experiment" in msg
    cfg["tables"]["zhang2022_table4"]["rows"][0]["experiment"] = ["zhang2022/baseline_act", "nopaper/x"]
    assert keys(cfg) == ["tables.zhang2022_table4.rows['Baseline (ACT)'].experiment"]


def test_table_columns_compare_to_and_stats_name_what_the_table_has(cfg):
    t = cfg["tables"]["zhang2022_table4"]
    t["rows"][1]["compare_to"] = "Baseline (ACT"
    t["rows"][0]["columns"] = ["UA", "UAR"]
    t["rows"][0]["reported"]["Anger "] = 1.0
    t["stats"]["columns"] = ["UA", "WAR"]
    t["headline"] = {"row": "Selective MTL", "column": "UA"}
    assert sorted(keys(cfg)) == sorted([
        "tables.zhang2022_table4.headline.row",
        "tables.zhang2022_table4.rows['Combined (ACT+{corpora.spon.name})'].compare_to",
        "tables.zhang2022_table4.rows['Baseline (ACT)'].columns",
        "tables.zhang2022_table4.rows['Baseline (ACT)'].reported",
        "tables.zhang2022_table4.stats.columns"])


def test_protocol_typo(cfg):
    cfg["experiments"]["zhang2022"]["baseline_act"]["protocol"] = "loso_5"
    assert problems(cfg) == [("experiments.zhang2022.baseline_act.protocol", "'loso_5' is not a key of protocols")]


def test_corpus_and_encoder_typos(cfg):
    cfg["experiments"]["zhang2022"]["baseline_act"]["corpus"] = "iemocapp"
    cfg["experiments"]["zhang2022"]["baseline_spon"]["inputs"] = {"audio": "fbank_40"}
    assert keys(cfg) == ["experiments.zhang2022.baseline_act.corpus", "experiments.zhang2022.baseline_spon.inputs.audio"]


def test_union_corpus_without_members(cfg):
    cfg["corpora"]["act_spon"]["members"] = None
    assert keys(cfg) == ["corpora.act_spon.members"]


def test_union_members_are_native_corpora_with_a_protocol_and_a_style(cfg):
    cfg["corpora"]["act_spon"]["members"] = {"iemocap": "loso_5", "spon": "random5", "nocorpus": "loso5"}
    cfg["corpora"]["spon"]["style"] = None
    assert keys(cfg) == ["corpora.act_spon.members.iemocap", "corpora.spon.style", "corpora.act_spon.members.nocorpus"]
    cfg["corpora"]["act_spon"]["members"] = {"iemocap": "member_folds"}
    assert keys(cfg) == ["corpora.act_spon.members.iemocap"]   # a union protocol is not a member's


def test_union_corpus_needs_a_union_protocol_and_only_it(cfg):
    cfg["experiments"]["zhang2022"]["combined"]["protocol"] = "loso5"
    cfg["experiments"]["zhang2022"]["baseline_act"]["protocol"] = "member_folds"
    assert keys(cfg) == ["experiments.zhang2022.baseline_act.protocol", "experiments.zhang2022.combined.protocol"]


def test_native_corpus_needs_a_root_or_synth(cfg):
    cfg["corpora"]["spon"]["synth"] = None
    cfg["corpora"]["spon"]["root"] = None
    assert keys(cfg) == ["corpora.spon.root"]


def test_augmented_corpus_copies_a_plain_corpus_as_generic_csv(cfg):
    cfg["corpora"]["aug"] = {"format": "iemocap", "root": None, "synth": None,
                             "augment": {"source": "act_spon"}}   # a union corpus cannot be the source
    assert keys(cfg) == ["corpora.aug.augment.source", "corpora.aug.format"]
    cfg["corpora"]["aug"] = {"format": "generic_csv", "root": None, "synth": None, "augment": {"source": "iemocap"}}
    check_config(cfg)   # no root needed: the augment stage writes the corpus


def test_corpus_table_names_are_not_result_table_names(cfg):
    cfg.setdefault("corpus_tables", {})["zhang2022_table4"] = {"paper": "zhang2022"}
    assert keys(cfg) == ["corpus_tables.zhang2022_table4"]


def test_demo_text_encoder_reads_a_known_corpus(cfg):
    cfg["encoders"]["roberta_large"]["demo"]["texts_from"] = "iemocap2"
    assert keys(cfg) == ["encoders.roberta_large.demo.texts_from"]


def test_model_params_data_and_loss_keys_are_the_families_fields(cfg):
    e = cfg["experiments"]["zhang2022"]
    e["baseline_act"]["model_params"]["d_lsmt"] = 32
    e["baseline_act"]["train"]["data"]["train_fraction"] = 0.5   # a key of the MTL recipe, not this one
    e["baseline_spon"]["train"]["loss"] = {"style_lambda": 0.8}   # this recipe has no loss options
    e["mtl"]["train"]["loss"] = {"style_lamda": 0.8}
    cfg["experiments"]["ispas2023"]["rob_mt"]["train"]["data"]["encoder"] = "frozen"
    got = dict(problems(cfg))
    assert set(got) == {"experiments.zhang2022.baseline_act.model_params.d_lsmt",
                        "experiments.zhang2022.baseline_act.train.data.train_fraction",
                        "experiments.zhang2022.baseline_spon.train.loss.style_lambda",
                        "experiments.zhang2022.mtl.train.loss.style_lamda",
                        "experiments.ispas2023.rob_mt.train.data.encoder"}
    assert "d_lstm" in got["experiments.zhang2022.baseline_act.model_params.d_lsmt"]
    assert "takes no train.loss options" in got["experiments.zhang2022.baseline_spon.train.loss.style_lambda"]
    assert "style_lambda" in got["experiments.zhang2022.mtl.train.loss.style_lamda"]
    assert "audio_layer" in got["experiments.ispas2023.rob_mt.train.data.encoder"]


def test_unknown_model_and_wrong_cache_roles(cfg):
    cfg["experiments"]["zhang2022"]["baseline_act"]["model"] = "zhang_bilstm"
    cfg["experiments"]["ispas2023"]["rob_mt"]["inputs"] = {"audio": "hubert_large"}
    assert keys(cfg) == ["experiments.zhang2022.baseline_act.model", "experiments.ispas2023.rob_mt.inputs"]


def test_validation_selection_needs_a_validation_split(cfg):
    e = cfg["experiments"]["zhang2022"]
    e["baseline_act"]["train"]["selection"] = "val_uar"   # loso5 has val_policy none
    e["mtl"]["train"]["selection"] = "val_uar"            # a union of loso5 and random5: no validation either
    cfg["experiments"]["ispas2023"]["rob_mt"]["train"]["selection"] = "val_uar"   # lospk10 has one: fine
    got = dict(problems(cfg))
    assert set(got) == {"experiments.zhang2022.baseline_act.train.selection", "experiments.zhang2022.mtl.train.selection"}
    assert "'loso5' has val_policy none" in got["experiments.zhang2022.baseline_act.train.selection"]
    e["baseline_act"]["protocol"] = "loso5_val"
    assert keys(cfg) == ["experiments.zhang2022.mtl.train.selection"]


def test_fusion_trials_exist_and_share_corpus_and_protocol(cfg):
    f = cfg["fusion"]["ispas2023_disc_trials"]
    f["experiments"] = [*f["experiments"], "ispas2023/rob_mtt"]
    assert keys(cfg) == ["fusion.ispas2023_disc_trials.experiments"]
    f["experiments"] = ["ispas2023/rob_mt", "zhang2022/baseline_act"]
    (key, msg), = problems(cfg)
    assert "share corpus and protocol" in msg and "zhang2022/baseline_act (iemocap, loso5)" in msg


def test_paper_typo_builds_nothing_and_is_an_error(cfg):
    cfg["papers"] = ["zhang2022", "ispas2032"]
    (key, msg), = problems(cfg)
    assert key == "papers" and "'ispas2032' has no table or fusion set" in msg


def test_names_must_fit_the_wildcards(cfg):
    cfg["experiments"]["zhang2022"]["baseline act 2"] = cfg["experiments"]["zhang2022"]["baseline_act"]
    assert keys(cfg) == ["experiments.zhang2022.baseline act 2"]


def test_every_problem_is_reported_one_line_each(cfg):
    cfg["experiments"]["zhang2022"]["baseline_act"]["protocol"] = "loso_5"
    cfg["papers"] = ["zhang2O22"]
    with pytest.raises(ConfigError) as e:
        check_config(cfg)
    lines = str(e.value).splitlines()
    assert len(lines) == 2 and all(line.startswith("config: ") for line in lines)


# ----------------------------------------------------------------------------- the schema


@pytest.mark.parametrize("bad, key", [
    ({"selection": "val-uar"}, "experiments.zhang2022.baseline_act.train.selection"),
    ({"lrr": 1e-3}, "experiments.zhang2022.baseline_act.train.lrr"),
    ({"threads": 2}, "experiments.zhang2022.baseline_act.train.threads"),   # the job's threads are the rule's
])
def test_schema_names_the_bad_train_key(schema, bad, key):
    cfg = _load("config.yaml")
    for c in cfg["corpora"].values():
        if str(c.get("root")).startswith("PLACEHOLDER"):
            c["root"] = "/data"
    cfg["experiments"]["zhang2022"]["baseline_act"]["train"].update(bad)
    assert [k for k, _ in schema_problems(cfg, schema)] == [key]


def test_dead_top_level_threads_is_gone(schema):
    cfg = {**_load("config.yaml"), "threads": 4}
    assert "threads" in [k for k, _ in schema_problems(cfg, schema)]


def test_train_schema_is_train_config(schema):
    """config/schema.yaml's train keys and defaults are emorepro.train.TrainConfig's fields and defaults."""
    from emorepro.train import TrainConfig

    props = schema["properties"]["experiments"]["additionalProperties"]["additionalProperties"]["properties"]["train"]
    fields = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
              for f in dataclasses.fields(TrainConfig)}
    assert {k: v["default"] for k, v in props["properties"].items()} == fields
    assert props["additionalProperties"] is False


# ----------------------------------------------------------------------------- torch-free option names


def _dataclass_of(entry, kind):
    name = {"model_params": entry.config, "data": entry.data, "loss": entry.loss}[kind]
    return entry._get(name) if name else None


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("kind", ["model_params", "data", "loss"])
def test_registry_option_names_equal_the_dataclass_parameters(model, kind):
    entry = MODELS[model]
    cls = _dataclass_of(entry, kind)
    expected = tuple(inspect.signature(cls).parameters) if cls else ()
    assert entry.option_names(kind) == expected


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_recipe_reads_the_option_classes_the_registry_names(model):
    """A recipe that reads train.data/train.loss builds the dataclass its registry entry names (and no other)."""
    entry = MODELS[model]
    source = "\n".join(inspect.getsource(c) for c in entry.recipe.__mro__ if c.__module__.startswith("emorepro.models"))
    for kind, name in (("data", entry.data), ("loss", entry.loss)):
        if name:
            assert name in source, f"{entry.recipe_name} does not use {name}"
        else:
            assert f"cfg.{kind}" not in source, f"{entry.recipe_name} reads train.{kind}: name its dataclass in MODELS"


def test_static_reader_follows_bases_imports_and_field_flags(tmp_path, monkeypatch):
    from emorepro.models import static

    pkg = tmp_path / "models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text(
        "from dataclasses import dataclass, field\n"
        "@dataclass\nclass Base:\n    a: int = 1\n    b: list = field(default_factory=list)\n")
    (pkg / "fam.py").write_text(
        "from dataclasses import dataclass as _dc, field\nfrom typing import ClassVar\n"
        "from .base import Base as B\nimport torch\n"
        "@_dc(frozen=True)\nclass Cfg(B):\n    c: float = 0.5\n    K: ClassVar[int] = 3\n"
        "    d: int = field(init=False, default=0)\n    def f(self):\n        x: int = 1\n")
    monkeypatch.setattr(static, "PACKAGE_ROOT", tmp_path)
    static.dataclass_params.cache_clear()
    static._module_tree.cache_clear()
    try:
        assert static.dataclass_params("emorepro.models.fam", "Cfg") == ("a", "b", "c")
        assert static.dataclass_params("emorepro.models.fam", "B") == ("a", "b")
        with pytest.raises(LookupError, match="no class 'Nope'"):
            static.dataclass_params("emorepro.models.fam", "Nope")
    finally:
        static.dataclass_params.cache_clear()
        static._module_tree.cache_clear()


def test_checking_the_demo_config_imports_neither_torch_nor_the_families():
    code = ("import sys, yaml\nfrom snakemake.utils import update_config, validate\n"
            "from emorepro.config import check_config\n"
            "c = yaml.safe_load(open('config/config.yaml')); update_config(c, yaml.safe_load(open('config/demo.yaml')))\n"
            "validate(c, 'config/schema.yaml'); check_config(c)\n"
            "bad = [m for m in sys.modules if m == 'torch' or m.startswith('emorepro.models.') and m != 'emorepro.models.static']\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_experiments_whose_rule_names_would_collide(cfg):
    cfg["experiments"]["zhang2022"]["baseline-act"] = cfg["experiments"]["zhang2022"]["baseline_act"]
    (key, msg), = problems(cfg)
    assert key == "experiments.zhang2022.baseline-act" and "experiments.zhang2022.baseline_act" in msg


def test_cited_rows_labels_figures_and_augment(cfg):
    """Ghosh et al.: cited rows name no experiment, labels name label columns, figure claims name panels,
    an experiment's augmented corpus copies its own corpus."""
    t = cfg["tables"]["ghosh2022_table1"]
    t["rows"][0]["experiment"] = "ghosh2022/mmer"
    del t["rows"][-1]["experiment"]
    t["rows"][-2]["labels"]["Modalities"] = "{a}"
    f = cfg["figures"]["ghosh2022_fig2"]
    f["claims"][0]["higher"] = "MMER w/o acl"
    f["panels"][1]["experiment"] = "ghosh2022/nope"
    f["bias_class"] = "neutral"
    cfg["corpora"]["iemocap_aug"]["augment"]["source"] = "spon"
    assert sorted(keys(cfg)) == sorted([
        "tables.ghosh2022_table1.rows['Wu et al. [5]'].experiment",
        "tables.ghosh2022_table1.rows['MMER (test-selected epoch)']",   # needs an experiment, a fusion set or cited
        "tables.ghosh2022_table1.rows['MMER'].labels.Modalities",
        "figures.ghosh2022_fig2.claims[0].higher",
        "figures.ghosh2022_fig2.panels['MMER w/o CTC'].experiment",
        "figures.ghosh2022_fig2.bias_class",
        *[f"experiments.ghosh2022.{v}.augment" for v in ("mmer", "mmer_wo_ctc", "mmer_wo_scl", "mmer_oracle")]])


def test_packed_seeds_refuse_experiments_that_read_copies_or_frame_labels(cfg):
    """A job of several seeds passes no augmented copies or frame labels: such an experiment must train one seed per job."""
    cfg["experiments"]["ghosh2022"]["mmer"]["seeds_per_job"] = 2
    cfg["experiments"]["pan2024"]["retrain_l3"]["seeds_per_job"] = 2
    cfg["experiments"]["pan2024"]["retrain_l4"]["folds_per_job"] = 5
    cfg["experiments"]["zhang2022"]["baseline_act"]["seeds_per_job"] = 2   # reads neither: fine
    cfg["experiments"]["zhang2022"]["mtl"]["folds_per_job"] = 5
    assert sorted(keys(cfg)) == ["experiments.ghosh2022.mmer.seeds_per_job",
                                 "experiments.pan2024.retrain_l3.seeds_per_job",
                                 "experiments.pan2024.retrain_l4.folds_per_job"]
