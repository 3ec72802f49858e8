# emorepro: raw IEMOCAP -> manifest -> folds -> feature cache -> training runs -> tables.
# All logic lives in src/emorepro; rules are split by stage in rules/*.smk.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/corpus.smk"
include: "rules/augment.smk"
include: "rules/features.smk"
include: "rules/pseudo_labels.smk"
include: "rules/train.smk"
include: "rules/tables.smk"
include: "rules/fusion.smk"


rule all:
    input:
        get_final_output(),
    default_target: True
