# Config checks and input functions of the augmentation stage (rules/augment.smk): kept apart from the
# rules, as rules/common.smk is for the other stages.

AUGMENTED_CORPORA = _names_regex(n for n, c in config["corpora"].items() if c.get("augment"))


def augment_spec(corpus):
    return config["corpora"][corpus]["augment"]


def augment_demo_dir(corpus, backend):
    return f"{RESULTS}/checkpoints/demo_augment/{corpus}/{backend}"


def augment_backend(corpus, stage):
    """corpora.<corpus>.augment.<stage> (back_translation | tts); a demo model's checkpoint is its rule's output."""
    spec = dict(augment_spec(corpus)[stage])
    if spec.get("demo"):
        spec["checkpoint"] = augment_demo_dir(corpus, spec["backend"])
    return spec


def _augment_checkpoint_input(corpus, stage):
    spec = augment_spec(corpus)[stage]
    if spec.get("demo"):
        return {"checkpoint": f"{augment_demo_dir(corpus, spec['backend'])}/demo_checkpoint.json"}
    return {}


def back_translate_inputs(wc):
    return {
        "manifest": f"{RESULTS}/{augment_spec(wc.corpus)['source']}/manifest.csv",
        **_augment_checkpoint_input(wc.corpus, "back_translation"),
    }


def synthesize_inputs(wc):
    return {
        "texts": f"{RESULTS}/{wc.corpus}/back_translation/texts.csv",
        "manifest": f"{RESULTS}/{augment_spec(wc.corpus)['source']}/manifest.csv",
        **_augment_checkpoint_input(wc.corpus, "tts"),
    }


def augment_demo_checkpoint_inputs(wc):
    if wc.backend == "nllb":  # the tiny tokenizer is trained on the source corpus's transcripts
        return {"manifest": f"{RESULTS}/{augment_spec(wc.corpus)['source']}/manifest.csv"}
    return {}


def augment_inputs(corpus, inputs):
    """What a training run with ACL reads of the augmented corpus ``corpus``: its manifest, the copies
    sidecar (copy -> source, for emorepro.augment.allowed_copies) and its feature caches, one per
    role -> encoder of ``inputs`` (keys aug_manifest, aug_copies, aug_cache_<role>)."""
    return {
        "aug_manifest": f"{RESULTS}/{corpus}/manifest.csv",
        "aug_copies": f"{RESULTS}/{corpus}/tts/copies.csv",
        **{f"aug_cache_{role}": feature_cache(corpus, enc) for role, enc in inputs.items()},
    }


def _uses_gpu(corpus, stage, backend):
    return int(augment_spec(corpus)[stage]["backend"] == backend)
