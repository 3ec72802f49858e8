"""Ingestion of the IEMOCAP layout, on the synthetic release written by espeak-ng."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import soundfile as sf

from emorepro.corpus.iemocap import MANIFEST_COLUMNS, ingest_iemocap, parse_utt_id
from emorepro.io import InputError


def test_manifest_has_every_column_and_one_row_per_summary_line(synth_root, manifest):
    assert list(manifest.columns) == MANIFEST_COLUMNS
    n_summary = sum(
        1 for f in synth_root.glob("Session*/dialog/EmoEvaluation/*.txt")
        for line in f.read_text().splitlines() if line.startswith("["))
    summary = json.loads((synth_root / "synth_summary.json").read_text())
    assert len(manifest) == n_summary == summary["n_utterances"]
    assert manifest["utt_id"].is_unique


def test_gender_comes_from_the_utterance_suffix_not_the_dialog_prefix(manifest):
    # Female turns inside male-led dialogs (Ses03M_impro05a, Ses05M_script01_1b) are the classic trap.
    in_m_dialogs = manifest[manifest["dialog"].str.match(r"Ses0\dM_")]
    females = in_m_dialogs[in_m_dialogs["utt_id"].str.contains(r"_F\d{3}$")]
    assert len(females) > 0
    assert (females["gender"] == "F").all()
    assert (females["speaker"] == females["session"].map(lambda s: f"Ses0{s}_F")).all()


def test_suffixed_dialogs_are_parsed(manifest):
    dialogs = set(manifest["dialog"])
    assert {"Ses03M_impro05a", "Ses03M_impro05b", "Ses05M_script01_1b"} <= dialogs
    row = manifest[manifest["dialog"] == "Ses05M_script01_1b"].iloc[0]
    assert row["mode"] == "scripted" and row["session"] == 5
    assert parse_utt_id("Ses03M_impro05a_F012", "x")["dialog"] == "Ses03M_impro05a"


def test_label_map_merges_exc_into_hap_and_drops_distractors(manifest):
    assert set(manifest.loc[manifest["label_raw"] == "exc", "label"]) == {"hap"}
    assert set(manifest.loc[manifest["label_raw"] == "hap", "label"]) == {"hap"}
    for raw in ("fru", "sur", "xxx"):
        rows = manifest[manifest["label_raw"] == raw]
        assert len(rows) > 0, f"the synthetic corpus should contain distractor {raw}"
        assert (rows["label"] == "").all()
    assert set(manifest["label"]) - {""} == {"neu", "hap", "ang", "sad"}


def test_values_match_the_files(synth_root, manifest):
    row = manifest.iloc[7]
    emo = (synth_root / f"Session{row['session']}" / "dialog" / "EmoEvaluation" / f"{row['dialog']}.txt").read_text()
    line = next(l for l in emo.splitlines() if f"\t{row['utt_id']}\t" in l)
    v, a, d = map(float, re.search(r"\[([\d.]+), ([\d.]+), ([\d.]+)\]$", line).groups())
    assert (row["valence"], row["arousal"], row["dominance"]) == (v, a, d)
    assert row["valence_norm"] == pytest.approx((v - 1) / 4)
    info = sf.info(row["wav"])
    assert row["duration"] == pytest.approx(info.frames / 16000, abs=1e-6)
    # Evaluator lines were counted, and transcripts were joined by utterance id.
    block = emo.split(line, 1)[1].split("\n\n", 1)[0]
    assert row["n_ratings"] == block.count("\nC-E")
    tr = (synth_root / f"Session{row['session']}" / "dialog" / "transcriptions" / f"{row['dialog']}.txt").read_text()
    assert f"{row['utt_id']} [" in tr and row["transcript"] in tr
    # The transcript-only "MXX" lines have no wav and must not become utterances.
    assert not manifest["utt_id"].str.contains("XX").any()


def test_synthesis_is_deterministic(synth_root, tmp_path):
    from emorepro.corpus.synth import SynthConfig, synthesize_iemocap

    other = tmp_path / "again"
    synthesize_iemocap(other, SynthConfig(seed=0, turns_per_dialog=10))
    for rel in ("Session2/dialog/EmoEvaluation/Ses02F_impro01.txt",
                "Session4/sentences/wav/Ses04M_script01_1/Ses04M_script01_1_F003.wav"):
        assert (other / rel).read_bytes() == (synth_root / rel).read_bytes()
    diff = tmp_path / "diff"
    synthesize_iemocap(diff, SynthConfig(seed=1, turns_per_dialog=10))
    rel = "Session2/dialog/EmoEvaluation/Ses02F_impro01.txt"
    assert (diff / rel).read_text() != (synth_root / rel).read_text()


def test_emotions_differ_acoustically(manifest):
    # The demo must be learnable from audio: sad speech is quieter and slower than angry speech.
    def rms(paths):
        return np.mean([np.sqrt(np.mean(sf.read(p)[0] ** 2)) for p in paths])
    ang = manifest.loc[manifest["label"] == "ang", "wav"][:8]
    sad = manifest.loc[manifest["label"] == "sad", "wav"][:8]
    assert rms(ang) > 1.5 * rms(sad)


def test_expected_counts_match_and_mismatch_lists_the_breakdown(synth_root, policy, manifest):
    kept = manifest[manifest["label"] != ""]
    exact = {"total": len(kept), "label": kept["label"].value_counts().to_dict(),
             "gender": kept["gender"].value_counts().to_dict(), "all_utterances": len(manifest)}
    ingest_iemocap(synth_root, policy, expected_counts=exact)  # no error
    wrong = dict(exact, label={**exact["label"], "sad": exact["label"]["sad"] + 1})
    with pytest.raises(InputError) as e:
        ingest_iemocap(synth_root, policy, expected_counts=wrong)
    assert f"label[sad]: expected {exact['label']['sad'] + 1}, found {exact['label']['sad']}" in str(e.value)
    assert "label[neu]" not in str(e.value)


def test_rule_step_regenerates_over_an_existing_tree_but_the_library_refuses_by_default(tmp_path):
    from emorepro.corpus.synth import SynthConfig, synthesize_iemocap
    from emorepro.steps import synth_corpus

    root = tmp_path / "IEMOCAP_full_release"
    synth_corpus(str(root), {"seed": 0, "turns_per_dialog": 4, "sessions": [1]})
    first = (root / "synth_summary.json").read_text()
    with pytest.raises(InputError, match="exists and is not empty"):
        synthesize_iemocap(root, SynthConfig(seed=1, turns_per_dialog=4, sessions=(1,)))
    synth_corpus(str(root), {"seed": 1, "turns_per_dialog": 4, "sessions": [1]})  # params changed: re-generated
    assert (root / "synth_summary.json").read_text() != first
    assert not list(tmp_path.glob(".IEMOCAP_full_release.*")), "no temp tree left behind"
