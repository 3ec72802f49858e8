"""MMER's augmentation stage on the synthetic corpus: the copy plan, leak-free folds, backends, provenance."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from emorepro.augment import allowed_copies, source_of
from emorepro.augment.backtranslate import (
    BackTranslationConfig,
    Paraphraser,
    back_translate,
)
from emorepro.augment.copies import plan_copies, seeded_rng
from emorepro.augment.pipeline import back_translate_corpus, synthesize_corpus
from emorepro.augment.tts import TTSConfig, make_tts
from emorepro.corpus.synth import EMOTION_WORDS, FILLERS, PARAPHRASES, PHRASES, VOICES
from emorepro.folds import make_folds
from emorepro.io import InputError, write_csv

DEMO_VOICES = {f"Ses0{s}_{g}": VOICES[s][i] for s in VOICES for i, g in enumerate("FM")}
IDENTITY = {"neu": "neu", "hap": "hap", "ang": "ang", "sad": "sad"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


@pytest.fixture(scope="module")
def plan(manifest):
    return plan_copies(manifest, seed=0)


@pytest.fixture(scope="module")
def small_manifest(manifest, tmp_path_factory) -> Path:
    """Two labelled utterances per speaker (20 sources, 80 copies), plus unlabelled rows, as a manifest CSV."""
    lab = manifest[manifest["label"] != ""].groupby("speaker").head(2)
    sub = pd.concat([lab, manifest[manifest["label"] == ""].head(3)]).sort_values("utt_id")
    path = tmp_path_factory.mktemp("small") / "manifest.csv"
    write_csv(path, sub)
    return path


# --------------------------------------------------------------------------- the copy plan and the folds

def test_every_labelled_utterance_gets_one_copy_per_other_session(manifest, plan):
    labelled = manifest[manifest["label"] != ""]
    assert len(plan) == 4 * len(labelled) and set(plan["source_utt"]) == set(labelled["utt_id"])
    spk_session = labelled.groupby("speaker")["session"].first()
    for src, rows in plan.groupby("source_utt"):
        s = labelled.set_index("utt_id").loc[src]
        assert sorted(rows["target_session"]) == sorted(set(range(1, 6)) - {s["session"]})
        assert list(rows.sort_values("copy")["aug_id"]) == [f"{src}__aug{j}" for j in range(4)]
        assert (rows["target_speaker"].map(spk_session) == rows["target_session"]).all()
        assert (rows["label"] == s["label"]).all() and (rows["source_session"] == s["session"]).all()
    assert all(source_of(a) == s for a, s in zip(plan["aug_id"], plan["source_utt"]))


def test_target_speaker_expresses_the_same_class_when_the_session_has_one(manifest, plan):
    labelled = manifest[manifest["label"] != ""]
    has = labelled.groupby("speaker")["label"].agg(set)
    for r in plan.itertuples():
        options = [p for p in labelled.loc[labelled["session"] == r.target_session, "speaker"].unique()
                   if r.label in has[p]]
        assert r.label_match == bool(options)
        if options:
            assert r.target_speaker in options


def test_plan_is_seeded_and_independent_of_the_manifest_order(manifest, plan):
    shuffled = manifest.sample(frac=1.0, random_state=3)
    pd.testing.assert_frame_equal(plan_copies(shuffled, seed=0), plan)
    other = plan_copies(manifest, seed=1)
    assert (other["target_speaker"] != plan["target_speaker"]).any()


@pytest.mark.parametrize("scheme,val", [("loso5", "none"), ("loso5", "held_out_speaker"), ("lospk10", "same_session")])
def test_no_fold_trains_on_copies_of_held_out_speakers_or_utterances(manifest, plan, scheme, val):
    folds = make_folds(manifest, scheme, val)
    speaker = manifest.set_index("utt_id")["speaker"]
    for k in sorted(folds["fold"].unique()):
        f = folds[folds["fold"] == k]
        held = set(f.loc[f["split"] != "train", "utt_id"])
        held_speakers = set(speaker[list(held)])
        train = set(f.loc[f["split"] == "train", "utt_id"])
        allowed = allowed_copies(plan, folds, k)
        assert set(allowed) == train
        got = {c for cs in allowed.values() for c in cs}
        rows = plan.set_index("aug_id").loc[sorted(got)]
        assert not set(rows["target_speaker"]) & held_speakers, f"fold {k}: a held-out speaker's voice"
        assert not set(rows["source_utt"]) & held, f"fold {k}: a copy of a held-out utterance"
        assert (rows["target_speaker"] != rows["source_speaker"]).all()
        # Nothing else is dropped, and there was something to drop: the filter is exact, not empty.
        of_train = plan[plan["source_utt"].isin(train)]
        voiced_by_held = of_train["target_speaker"].isin(held_speakers)
        assert voiced_by_held.any()
        assert got == set(of_train.loc[~voiced_by_held, "aug_id"])
        if scheme == "loso5" and val == "none":
            assert {len(v) for v in allowed.values()} == {3}


def test_one_copy_per_epoch_is_drawn_from_the_allowed_ones(manifest, plan):
    from emorepro.augment import choose_copies

    allowed = allowed_copies(plan, make_folds(manifest, "loso5", "none"), 3)
    picks = [choose_copies(allowed, seed=1, epoch=e) for e in range(6)]
    assert all(set(p) == set(allowed) and all(c in allowed[u] for u, c in p.items()) for p in picks)
    assert picks[0] == choose_copies(allowed, seed=1, epoch=0)
    u = next(iter(allowed))
    assert len({p[u] for p in picks}) > 1 or len({p[v] for p in picks for v in list(allowed)[:5]}) > 1
    sub = {u: allowed[u]}
    assert choose_copies(sub, seed=1, epoch=4)[u] == picks[4][u]  # independent of the other utterances


def test_the_fold_interface_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys, emorepro.augment as a; a.allowed_copies; a.choose_copies; "
            "import emorepro.augment.copies; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_allowed_copies_reads_the_augmented_manifest_with_the_source_manifest(manifest, plan):
    folds = make_folds(manifest, "loso5", "none")
    aug = pd.DataFrame({"utt_id": plan["aug_id"], "speaker": plan["target_speaker"]})
    assert allowed_copies(aug, folds, 2, manifest=manifest) == allowed_copies(plan, folds, 2)
    with pytest.raises(InputError, match="source manifest"):
        allowed_copies(aug, folds, 2)


def test_allowed_copies_rejects_copies_made_from_another_manifest(manifest, plan):
    folds = make_folds(manifest, "loso5", "none")
    train_utt = folds[(folds["fold"] == 1) & (folds["split"] == "train")]["utt_id"].iloc[0]
    with pytest.raises(InputError, match="another manifest"):
        allowed_copies(plan[plan["source_utt"] != train_utt], folds, 1)
    with pytest.raises(InputError, match="no rows for fold 9"):
        allowed_copies(plan, folds, 9)


def test_plan_needs_speakers_and_two_sessions(manifest):
    one = manifest[manifest["session"] == 1]
    with pytest.raises(InputError, match="two sessions"):
        plan_copies(one, seed=0)
    bad = manifest.copy()
    bad.loc[bad["label"] != "", "speaker"] = ""
    with pytest.raises(InputError, match="has no speaker"):
        plan_copies(bad, seed=0)


# --------------------------------------------------------------------------- back-translation backends

def test_every_phrase_and_filler_has_paraphrases_that_keep_its_emotion_words():
    originals = [p for ps in PHRASES.values() for p in ps] + FILLERS
    assert set(PARAPHRASES) == set(originals)
    for orig, alts in PARAPHRASES.items():
        assert 2 <= len(alts) <= 3 and len(set(alts)) == len(alts)
        for a in alts:
            assert a != orig
            assert _words(orig) & EMOTION_WORDS <= _words(a), (orig, a)


def test_paraphrase_rewords_corpus_text_deterministically_and_keeps_emotion_words(manifest):
    texts = [t for t in manifest["transcript"] if t]
    keys = [f"k{i}" for i in range(len(texts))]
    cfg = BackTranslationConfig(backend="paraphrase")
    out, info = back_translate(texts, keys, cfg, seed=0, progress=False)
    assert info["n_changed"] == len(texts) and "not back-translation" in info["label"]
    for t, o in zip(texts, out):
        assert _words(t) & EMOTION_WORDS <= _words(o), (t, o)
    assert back_translate(texts, keys, cfg, seed=0, progress=False)[0] == out
    assert back_translate(texts, keys, cfg, seed=1, progress=False)[0] != out
    assert back_translate(texts, keys, BackTranslationConfig(backend="none"), seed=0, progress=False)[0] == texts


def test_paraphrase_of_a_sentence_outside_the_tables_uses_rule_based_rewriting():
    para = Paraphraser()
    text = "Maybe it is time, I do not know."
    outs = {para(text, seeded_rng(s, "x")) for s in range(8)}
    assert text not in outs and len(outs) > 1
    assert all(o[0] == "M" or o[0] == "P" for o in outs)  # sentence case kept
    assert "Perhaps it's time, I don't know." in outs | {para(text, seeded_rng(s, "y")) for s in range(40)}
    assert para("Hello there.", seeded_rng(0, "x")) == "Hello there."  # nothing to rewrite: unchanged


def test_texts_per_source_or_per_copy_and_empty_transcripts(small_manifest, tmp_path):
    m = pd.read_csv(small_manifest, keep_default_na=False)
    empty_utt = m.loc[m["label"] != "", "utt_id"].iloc[0]
    m.loc[m["utt_id"] == empty_utt, "transcript"] = "[LAUGHTER]"
    write_csv(tmp_path / "m.csv", m)
    back_translate_corpus(str(tmp_path / "m.csv"), str(tmp_path / "shared.csv"), seed=0,
                          back_translation={"backend": "paraphrase"}, progress=False)
    info = back_translate_corpus(str(tmp_path / "m.csv"), str(tmp_path / "own.csv"), seed=0,
                                 back_translation={"backend": "paraphrase", "per_copy": True}, progress=False)
    shared = pd.read_csv(tmp_path / "shared.csv", keep_default_na=False)
    own = pd.read_csv(tmp_path / "own.csv", keep_default_na=False)
    assert (shared.groupby("source_utt")["text"].nunique() == 1).all()
    assert (own.groupby("source_utt")["text"].nunique() > 1).sum() > len(own) // 8
    assert info["n_empty_text"] == 4 and info["per_copy"]
    e = own[own["source_utt"] == empty_utt]
    assert (e["text_source"] == "").all() and (e["text"] == "hmm").all() and e["note"].str.contains("empty").all()


def test_back_translation_config_rejects_unknown_keys_and_backends():
    with pytest.raises(InputError, match="unknown key"):
        BackTranslationConfig.from_dict({"backend": "nllb", "beam": 4}, "corpora.x.augment.back_translation")
    with pytest.raises(InputError, match=r"back_translation\.backend"):
        BackTranslationConfig.from_dict({"backend": "google"}, "corpora.x.augment.back_translation")


@pytest.mark.parametrize("missing", ["config.json", "tokenizer.json", "model.safetensors"])
def test_nllb_names_the_missing_checkpoint_file(tmp_path, missing):
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        if name != missing:
            (tmp_path / name).write_text("{}")
    cfg = BackTranslationConfig(backend="nllb", checkpoint=str(tmp_path))
    with pytest.raises(InputError, match=re.escape(str(tmp_path / missing))):
        back_translate(["hello"], ["a"], cfg, seed=0, progress=False)


def test_nllb_without_a_checkpoint_names_the_config_key(tmp_path):
    with pytest.raises(InputError, match=r"corpora\.x\.augment\.back_translation\.checkpoint"):
        back_translate(["hi"], ["a"], BackTranslationConfig(backend="nllb"), seed=0, progress=False,
                       key="corpora.x.augment.back_translation")
    with pytest.raises(InputError, match="does not exist"):
        back_translate(["hi"], ["a"], BackTranslationConfig(backend="nllb", checkpoint=str(tmp_path / "nope")), seed=0,
                       progress=False)


@pytest.fixture(scope="module")
def tiny_nllb(manifest, tmp_path_factory) -> Path:
    from emorepro.augment.demo import make_tiny_nllb

    d = tmp_path_factory.mktemp("nllb") / "nllb"
    make_tiny_nllb(d, 0, list(manifest["transcript"]))
    return d


def test_tiny_nllb_back_translates_through_the_real_loading_code(tiny_nllb):
    from transformers import NllbTokenizerFast

    tok = NllbTokenizerFast.from_pretrained(tiny_nllb, src_lang="eng_Latn")
    assert tok("I am so happy")["input_ids"][0] == tok.convert_tokens_to_ids("eng_Latn")
    texts = ["I am so happy for you, after lunch", "this is outrageous, at the office", "", "the meeting is at ten"]
    cfg = BackTranslationConfig(backend="nllb", checkpoint=str(tiny_nllb), batch_size=2, device="cpu",
                                max_new_tokens=12)
    out, info = back_translate(texts, list("abcd"), cfg, seed=0, progress=False)
    assert out[2] == "" and all(o and o != t for o, t in zip(out, texts) if t)
    assert info["n_changed"] == 3
    assert back_translate(texts, list("abcd"), cfg, seed=0, progress=False)[0] == out  # seeded
    assert back_translate(texts, list("abcd"), cfg, seed=5, progress=False)[0] != out
    with pytest.raises(InputError, match="xyz_Latn"):
        back_translate(texts, list("abcd"), BackTranslationConfig(backend="nllb", checkpoint=str(tiny_nllb),
                                                                  pivot_lang="xyz_Latn"), seed=0, progress=False)


def test_tiny_nllb_is_the_same_bytes_for_the_same_seed(manifest, tiny_nllb, tmp_path):
    from emorepro.augment.demo import make_tiny_nllb

    info = make_tiny_nllb(tmp_path / "again", 0, list(manifest["transcript"]))
    assert info["files_sha256"] == json.loads((tiny_nllb / "demo_checkpoint.json").read_text())["files_sha256"]


# --------------------------------------------------------------------------- TTS backends and the corpus

def _run(manifest_csv: Path, out: Path, *, seed: int = 0, bt=None, tts=None) -> Path:
    bt = bt or {"backend": "paraphrase"}
    tts = tts or {"backend": "espeak", "voices": DEMO_VOICES}
    back_translate_corpus(str(manifest_csv), str(out / "texts.csv"), seed=seed, back_translation=bt, progress=False)
    synthesize_corpus(str(out / "texts.csv"), str(manifest_csv), str(out / "tts" / "corpus.csv"), seed=seed, tts=tts,
                      threads=2, progress=False)
    return out


def _tree_bytes(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def espeak_aug(small_manifest, tmp_path_factory) -> Path:
    return _run(small_manifest, tmp_path_factory.mktemp("aug"))


def test_augmentation_is_the_same_bytes_for_the_same_seed(small_manifest, espeak_aug, tmp_path):
    again = _tree_bytes(_run(small_manifest, tmp_path / "again"))
    first = _tree_bytes(espeak_aug)
    assert again == first and len([k for k in first if k.endswith(".wav")]) == 80
    other = _tree_bytes(_run(small_manifest, tmp_path / "seed1", seed=1))
    assert other["texts.csv"] != first["texts.csv"]
    assert sum(other[k] != first[k] for k in first if k.endswith(".wav")) > 40


def test_augmented_corpus_ingests_and_its_sidecar_maps_every_copy_to_its_source(small_manifest, espeak_aug, policy):
    from emorepro.corpus.generic import ingest_generic
    from emorepro.corpus.iemocap import LabelPolicy

    src = pd.read_csv(small_manifest, keep_default_na=False).set_index("utt_id")
    aug = ingest_generic(espeak_aug / "tts" / "corpus.csv", LabelPolicy(IDENTITY, frozenset()))
    copies = pd.read_csv(espeak_aug / "tts" / "copies.csv", keep_default_na=False).set_index("aug_id")
    assert set(aug["utt_id"]) == set(copies.index) and len(aug) == 80
    c = copies.loc[aug["utt_id"]]
    s = src.loc[c["source_utt"]]
    assert (aug["label"].to_numpy() == s["label"].to_numpy()).all()
    assert (aug["session"].astype(int).to_numpy() == s["session"].to_numpy()).all()
    assert (aug["speaker"].to_numpy() == c["target_speaker"].to_numpy()).all()
    assert (aug["speaker"].to_numpy() != s["speaker"].to_numpy()).all()
    assert (aug["transcript"].to_numpy() == c["text"].to_numpy()).all()
    assert (c["voice"] == c["target_speaker"].map(DEMO_VOICES)).all()
    x, sr = sf.read(aug["wav"].iloc[0])
    assert sr == 16000 and len(x) / sr == pytest.approx(aug["duration"].iloc[0]) and np.abs(x).max() > 0.05


def test_synthesize_refuses_to_replace_a_directory_it_did_not_write(small_manifest, espeak_aug, tmp_path):
    out = tmp_path / "tts"
    out.mkdir()
    (out / "precious.txt").write_text("not ours")
    with pytest.raises(InputError, match="refusing to replace"):
        synthesize_corpus(str(espeak_aug / "texts.csv"), str(small_manifest), str(out / "corpus.csv"), seed=0,
                          tts={"backend": "espeak", "voices": DEMO_VOICES}, progress=False)
    assert (out / "precious.txt").read_text() == "not ours"


def test_espeak_backend_errors_name_the_voice_the_speaker_or_the_binary(monkeypatch):
    with pytest.raises(InputError, match=r"no voice for speaker\(s\) \['Ses02_M'\]"):
        make_tts(TTSConfig(voices={"Ses01_F": "en-us+f1"}), {"Ses01_F": "F", "Ses02_M": "M"}, seed=0)
    with pytest.raises(InputError, match="no voice 'xx-nope'"):
        make_tts(TTSConfig(voices={"Ses01_F": "xx-nope"}), {"Ses01_F": "F"}, seed=0)
    seeded = make_tts(TTSConfig(), {"A": "F", "B": "F", "C": "M"}, seed=0).voices
    assert len(set(seeded.values())) == 3 and seeded["C"].split("+")[1].startswith("m")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="espeak-ng: executable not found"):
        make_tts(TTSConfig(), {"A": "F"}, seed=0)


@pytest.mark.parametrize("missing", ["model_file.pth", "config.json", "model_se.pth", "config_se.json"])
def test_yourtts_names_the_missing_checkpoint_file(tmp_path, missing):
    for name in ("model_file.pth", "config.json", "model_se.pth", "config_se.json", "language_ids.json"):
        if name != missing:
            (tmp_path / name).write_text("{}")
    with pytest.raises(InputError, match=re.escape(str(tmp_path / missing))):
        make_tts(TTSConfig(backend="yourtts", checkpoint=str(tmp_path)), {}, seed=0)
    with pytest.raises(InputError, match=r"tts\.checkpoint: required"):
        make_tts(TTSConfig(backend="yourtts"), {}, seed=0)


@pytest.fixture(scope="module")
def tiny_yourtts(tmp_path_factory) -> Path:
    from emorepro.augment.demo import make_tiny_yourtts

    d = tmp_path_factory.mktemp("yourtts") / "your_tts"
    make_tiny_yourtts(d, 0)
    return d


def test_tiny_yourtts_speaks_copies_with_same_class_d_vectors(manifest, tiny_yourtts, tmp_path):
    lab = manifest[manifest["label"] != ""]
    src = lab[lab["speaker"].isin(["Ses01_F", "Ses02_M"])].groupby("speaker").head(1)
    mcsv = tmp_path / "m.csv"
    write_csv(mcsv, lab[lab["speaker"].isin(["Ses01_F", "Ses02_M"])])
    texts = back_translate_corpus(str(mcsv), str(tmp_path / "texts.csv"), seed=0,
                                  back_translation={"backend": "paraphrase"}, progress=False)
    plan = pd.read_csv(tmp_path / "texts.csv", keep_default_na=False)
    plan = plan[plan["source_utt"].isin(src["utt_id"])]
    write_csv(tmp_path / "few.csv", plan)
    assert texts["n_copies"] > len(plan) == 2  # two sources, one other session each
    tts = {"backend": "yourtts", "checkpoint": str(tiny_yourtts), "device": "cpu"}
    summary = synthesize_corpus(str(tmp_path / "few.csv"), str(mcsv), str(tmp_path / "a" / "corpus.csv"), seed=0,
                                tts=tts, progress=False)
    m = pd.read_csv(mcsv, keep_default_na=False)
    for r in plan.itertuples():
        n_same = int(((m["speaker"] == r.target_speaker) & (m["label"] == r.label)).sum())
        assert summary["tts"]["clips_per_d_vector"][f"{r.target_speaker}/{r.label}"] == n_same > 0
        x, sr = sf.read(tmp_path / "a" / "wav" / f"{r.aug_id}.wav")
        assert sr == 16000 and len(x) > 1600 and np.isfinite(x).all() and np.abs(x).max() > 0
    assert summary["tts"]["length_scale"] == 1.5 and summary["tts"]["noise_scale"] == 0.0
    synthesize_corpus(str(tmp_path / "few.csv"), str(mcsv), str(tmp_path / "b" / "corpus.csv"), seed=0, tts=tts,
                      progress=False)
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")
    # The released model has a language embedding: its language table is required.
    broken = tmp_path / "broken"
    shutil.copytree(tiny_yourtts, broken)
    (broken / "language_ids.json").unlink()
    with pytest.raises(InputError, match=re.escape(str(broken / "language_ids.json"))):
        make_tts(TTSConfig(backend="yourtts", checkpoint=str(broken)), {}, seed=0)


# --------------------------------------------------------------------------- provenance and trace

def test_steps_record_provenance_and_trace_walks_a_copy_back_to_its_source(small_manifest, tmp_path, capsys):
    from emorepro import steps
    from emorepro.cli import main
    from emorepro.provenance import write_provenance

    src_dir = tmp_path / "src"
    (src_dir / "wav").mkdir(parents=True)
    m = pd.read_csv(small_manifest, keep_default_na=False)
    for w in m["wav"]:  # a private copy of the source wavs: this test tampers with one
        shutil.copy(w, src_dir / "wav" / Path(w).name)
    m["wav"] = [str(src_dir / "wav" / Path(w).name) for w in m["wav"]]
    write_csv(src_dir / "manifest.csv", m)
    raw = sorted(m["wav"])

    write_provenance(src_dir / "manifest.csv", rule="ingest", params={"root": "x"}, inputs={"raw": raw},
                     outputs=[src_dir / "manifest.csv"], started="t")
    aug = tmp_path / "iemocap_aug"
    steps.back_translate(str(src_dir / "manifest.csv"), str(aug / "back_translation" / "texts.csv"), corpus="iemocap_aug",
                         source="iemocap", seed=0, back_translation={"backend": "paraphrase"})
    steps.synthesize(str(aug / "back_translation" / "texts.csv"), str(src_dir / "manifest.csv"),
                     str(aug / "tts" / "corpus.csv"), corpus="iemocap_aug", source="iemocap", seed=0,
                     tts={"backend": "espeak", "voices": DEMO_VOICES}, threads=2)
    steps.ingest(str(aug / "tts" / "corpus.csv"), str(aug / "manifest.csv"), fmt="generic_csv", label_map=IDENTITY,
                 drop_labels=[])
    side = json.loads((aug / "tts" / "corpus.csv.prov.json").read_text())
    assert side["rule"] == "synthesize" and side["tts"]["backend"] == "espeak"
    assert side["versions"]["espeak-ng"].startswith("eSpeak NG")
    assert len([o for o in side["outputs"] if o["path"].endswith(".wav")]) == 80
    bt = json.loads((aug / "back_translation" / "texts.csv.prov.json").read_text())
    assert bt["rule"] == "back_translate" and bt["back_translation"]["backend"] == "paraphrase"

    # The table trace (emorepro trace) walks the augmented manifest down to the source corpus's raw files.
    from emorepro.provenance import _walk

    lines: list[str] = []
    assert _walk(str(aug / "manifest.csv"), str(aug / "manifest.csv"), lines, "", set(), 2)
    records = [ln.split()[:2] for ln in lines if not ln.lstrip().startswith(("<-", "("))]
    assert records[:2] == [["ingest", str(aug / "manifest.csv")], ["synthesize", str(aug / "tts" / "corpus.csv")]]
    assert ["ingest", str(src_dir / "manifest.csv")] in records and ["back_translate", str(
        aug / "back_translation" / "texts.csv")] in records
    assert any(str(src_dir / "wav") in ln for ln in lines)  # down to the source's raw wavs

    copy_id = pd.read_csv(aug / "manifest.csv")["utt_id"].iloc[5]
    assert main(["trace-utt", str(aug / "manifest.csv"), copy_id]) == 0
    out = capsys.readouterr().out
    assert f"copy of   {source_of(copy_id)}" in out and out.rstrip().endswith("every link matches its recorded sha256")
    assert out.count("[ok]") >= 7
    # A tampered source wav breaks the chain where it happened.
    src_wav = Path(m.set_index("utt_id").loc[source_of(copy_id), "wav"])
    src_wav.write_bytes(src_wav.read_bytes()[:-2] + b"\x00\x01")
    assert main(["trace-utt", str(aug / "manifest.csv"), copy_id]) == 1
    assert re.search(r"wav .*\[MISMATCH\]", capsys.readouterr().out)


# --------------------------------------------------------------------------- the rules

def test_dry_run_plans_the_augmentation_stage_for_the_augmented_corpus(tmp_path):
    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp_path)
    out = run_snakemake(wd, "-n", "results/iemocap_aug/manifest.csv", "--configfile", "config/demo.yaml").stdout
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[1], re.MULTILINE))
    assert stats == {"synth_corpus": "1", "ingest": "2", "back_translate": "1", "synthesize": "1", "total": "5"}
    assert "input: results/iemocap_aug/tts/corpus.csv" in out
    # The real config (roots filled in, the configured checkpoint directories present): NLLB and YourTTS
    # from local checkpoints, each on a GPU.
    for ck in re.findall(r"checkpoint: (checkpoints/\S+)", (wd / "config" / "config.yaml").read_text()):
        (wd / ck).mkdir(parents=True, exist_ok=True)
    (wd / "real.yaml").write_text("corpora:\n  iemocap: {root: /data/IEMOCAP_full_release}\n"
                                  "  spon: {root: /data/spon.csv}\n  jtes: {root: /data/jtes_v1.1}\n")
    out = run_snakemake(wd, "-n", "-p", "results/iemocap_aug/manifest.csv", "--configfile", "config/config.yaml",
                        "real.yaml").stdout
    assert re.search(r"rule back_translate:(?:(?!\nrule ).)*gpu=1", out, re.DOTALL)
    assert re.search(r"rule synthesize:(?:(?!\nrule ).)*gpu=1", out, re.DOTALL)
    # A wrong source corpus names the key.
    (wd / "bad.yaml").write_text("corpora:\n  iemocap_aug:\n    augment: {source: nope}\n")
    r = run_snakemake(wd, "-n", "--configfile", "config/demo.yaml", "bad.yaml", check=False)
    assert r.returncode != 0 and "corpora.iemocap_aug.augment.source" in r.stdout + r.stderr
