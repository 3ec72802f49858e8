"""Every kind of bad input gives one clear line naming the file (and line) and leaves no output."""
from __future__ import annotations

import logging

import pytest

from emorepro.cli import main


def ingest_cli(root, out, capsys) -> str:
    """Run `emorepro corpus ingest`, assert it failed cleanly, return its one-line message."""
    rc = main(["corpus", "ingest", "iemocap", str(root), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert not out.exists(), "a failed ingest must leave no manifest"
    assert not list(out.parent.glob(f".{out.name}*")), "no temp file left behind"
    assert err.startswith("emorepro: error: ") and "\n" not in err
    return err


def _emo(root, dialog="Ses02F_impro01"):
    return root / "Session2" / "dialog" / "EmoEvaluation" / f"{dialog}.txt"


def _first_wav(root):
    return sorted((root / "Session2" / "sentences" / "wav" / "Ses02F_impro01").glob("*.wav"))[0]


def test_missing_root(tmp_path, capsys):
    err = ingest_cli(tmp_path / "nope", tmp_path / "m.csv", capsys)
    assert "nope: corpus root does not exist" in err


def test_wrong_layout(tmp_path, capsys):
    (tmp_path / "root" / "wavs").mkdir(parents=True)
    err = ingest_cli(tmp_path / "root", tmp_path / "m.csv", capsys)
    assert "wrong layout" in err and "Session1..Session5" in err


def test_malformed_summary_line(corpus_copy, tmp_path, capsys):
    f = _emo(corpus_copy)
    lines = f.read_text().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("["))
    lines[i] = lines[i].replace("\t[", "\t(")  # broken V/A/D bracket
    f.write_text("\n".join(lines) + "\n")
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"{f}:{i + 1}: malformed summary line" in err


def test_unknown_label(corpus_copy, tmp_path, capsys):
    f = _emo(corpus_copy)
    lines = f.read_text().splitlines()
    i = next(k for k, l in enumerate(lines) if l.startswith("["))
    parts = lines[i].split("\t")
    parts[2] = "joy"
    lines[i] = "\t".join(parts)
    f.write_text("\n".join(lines) + "\n")
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"{f}:{i + 1}: unknown label 'joy'" in err


def test_duplicate_utterance_id(corpus_copy, tmp_path, capsys):
    f = _emo(corpus_copy)
    text = f.read_text()
    first = next(l for l in text.splitlines() if l.startswith("["))
    f.write_text(text + "\n" + first + "\nC-E1:\tNeutral;\t()\n")
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert "duplicate utterance id" in err and str(f) in err and "first seen at" in err


def test_missing_wav(corpus_copy, tmp_path, capsys):
    wav = _first_wav(corpus_copy)
    wav.unlink()
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"missing wav {wav}" in err and "EmoEvaluation" in err


def test_truncated_wav(corpus_copy, tmp_path, capsys):
    wav = _first_wav(corpus_copy)
    wav.write_bytes(wav.read_bytes()[:30])  # header cut short
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert str(wav) in err and ("unreadable" in err or "not a valid wav" in err)


def test_non_wav_file(corpus_copy, tmp_path, capsys):
    wav = _first_wav(corpus_copy)
    wav.write_text("this is not audio\n" * 100)
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert str(wav) in err and "unreadable or not a wav" in err


def test_wrong_sample_rate(corpus_copy, tmp_path, capsys):
    import soundfile as sf

    wav = _first_wav(corpus_copy)
    x, _ = sf.read(wav)
    sf.write(wav, x, 22050)
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"{wav}: sample rate 22050 Hz, expected 16000 Hz" in err


def test_empty_transcript_is_a_warning_and_kept(corpus_copy, policy, caplog):
    from emorepro.corpus.iemocap import ingest_iemocap

    tr = corpus_copy / "Session2" / "dialog" / "transcriptions" / "Ses02F_impro01.txt"
    lines = tr.read_text().splitlines()
    utt = lines[0].split(" ", 1)[0]
    lines[0] = lines[0].split("]:", 1)[0] + "]:"
    tr.write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        df = ingest_iemocap(corpus_copy, policy)
    assert utt in set(df["utt_id"])
    assert df.set_index("utt_id").loc[utt, "transcript"] == ""
    assert any(utt in r.getMessage() and "empty or missing transcript" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("bad, key", [
    ("corpora:\n  iemocap:\n    sample_rate: sixteen\n", "corpora.iemocap.sample_rate"),
    # issue 13: a misspelt value, a misspelt train key, a misspelt model parameter
    ("experiments:\n  zhang2022:\n    baseline_act:\n      train: {selection: val-uar}\n",
     "experiments.zhang2022.baseline_act.train.selection"),
    ("experiments:\n  zhang2022:\n    baseline_act:\n      train: {lrr: 1.0e-3}\n",
     "experiments.zhang2022.baseline_act.train.lrr"),
    ("experiments:\n  zhang2022:\n    baseline_act:\n      model_params: {d_lsmt: 32}\n",
     "experiments.zhang2022.baseline_act.model_params.d_lsmt"),
])
def test_config_mistake_fails_the_dry_run_naming_the_key(tmp_path, bad, key):
    """`snakemake -n` on a config with a bad key or value names the key and plans nothing."""
    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp_path)
    (wd / "bad.yaml").write_text(bad)
    r = run_snakemake(wd, "-n", "--configfile", "config/demo.yaml", "bad.yaml", check=False)
    out = r.stderr + r.stdout
    assert r.returncode != 0
    assert f"config: {key}: " in out, out
    assert "Job stats" not in out and "rule " not in out   # no job planned
    assert not (wd / "results").exists()


def test_placeholder_corpus_root_is_rejected(tmp_path):
    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp_path)
    r = run_snakemake(wd, "-n", check=False)  # the real config as shipped: root is a placeholder
    assert r.returncode != 0
    assert "PLACEHOLDER" in r.stderr + r.stdout
