"""Every kind of bad input gives one clear line naming the file (and line) and leaves no output."""
from __future__ import annotations

import logging
import shutil

import pytest

from emorepro.cli import main
from emorepro.io import InputError


def ingest_cli(root, out, capsys, fmt="iemocap", *extra) -> str:
    """Run `emorepro corpus ingest <fmt>`, assert it failed cleanly, return its one-line message."""
    rc = main(["corpus", "ingest", fmt, str(root), "-o", str(out), *extra])
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


# --------------------------------------------------------------------------- issue 14: nothing silently wrong


def _summary_line(root, k: int = 0):
    """(file, line index, lines) of the k-th summary line of Session2's first dialog."""
    f = _emo(root)
    lines = f.read_text().splitlines()
    i = [n for n, line in enumerate(lines) if line.startswith("[")][k]
    return f, i, lines


def test_truncated_wav_with_an_intact_header(corpus_copy, tmp_path, capsys):
    wav = _first_wav(corpus_copy)
    data = wav.read_bytes()
    wav.write_bytes(data[: 44 + (len(data) - 44) // 3])   # header still declares the full length
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"{wav}: truncated wav" in err and "header declares" in err


def test_wav_shorter_than_its_segment(corpus_copy, tmp_path, capsys):
    import soundfile as sf

    wav = _first_wav(corpus_copy)
    x, sr = sf.read(wav)
    sf.write(wav, x[: len(x) // 4], sr, subtype="PCM_16")   # a valid, consistent, but cut wav
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert str(wav) in err and "but its segment" in err and str(_emo(corpus_copy)) in err


def test_segment_that_ends_before_it_starts(corpus_copy, tmp_path, capsys):
    import re

    f, i, lines = _summary_line(corpus_copy)
    m = re.match(r"\[(\S+) - (\S+)\]", lines[i])
    lines[i] = lines[i].replace(f"[{m[1]} - {m[2]}]", f"[{m[2]} - {m[1]}]")
    f.write_text("\n".join(lines) + "\n")
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"{f}:{i + 1}: segment ends before it starts" in err


def test_non_utf8_transcript_is_an_error_naming_the_line_unless_the_encoding_says_so(corpus_copy, tmp_path, capsys,
                                                                                      policy):
    from emorepro.corpus.iemocap import ingest_iemocap

    tr = corpus_copy / "Session2" / "dialog" / "transcriptions" / "Ses02F_impro01.txt"
    lines = tr.read_bytes().split(b"\n")
    lines[2] = lines[2] + b" caf\xe9"                     # latin-1 e-acute: not UTF-8
    tr.write_bytes(b"\n".join(lines))
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"{tr}:3:" in err and "not valid utf-8" in err and "encoding" in err
    df = ingest_iemocap(corpus_copy, policy, encoding="latin-1")
    assert df["transcript"].str.endswith("café").sum() == 1


def test_non_utf8_emo_evaluation_is_an_error(corpus_copy, tmp_path, capsys):
    f = _emo(corpus_copy)
    data = f.read_bytes().replace(b"% [START_TIME", b"% \xff[START_TIME", 1)
    f.write_bytes(data)
    err = ingest_cli(corpus_copy, tmp_path / "m.csv", capsys)
    assert f"{f}:1:" in err and "not valid utf-8" in err


def _csv_corpus(tmp_path, rows: str, encoding="utf-8"):
    import numpy as np
    import soundfile as sf

    for u in ("a", "b"):
        sf.write(tmp_path / f"{u}.wav", np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    csv = tmp_path / "corpus.csv"
    csv.write_bytes(("utt_id,wav,label_raw,transcript,start,end,valence\n" + rows).encode(encoding))
    return csv


def test_latin1_csv_corpus_is_a_clear_error_and_reads_with_its_encoding(tmp_path, capsys, policy):
    from emorepro.corpus.generic import ingest_generic

    csv = _csv_corpus(tmp_path, "a,a.wav,neu,ça va,0,1,3\nb,b.wav,sad,très triste,0,1,2\n", encoding="latin-1")
    rc = main(["corpus", "ingest", "csv", str(csv), "-o", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"{csv}:2:" in err and "not valid utf-8" in err and "\n" not in err
    assert not (tmp_path / "m.csv").exists()
    df = ingest_generic(csv, policy, encoding="latin-1")
    assert list(df["transcript"]) == ["ça va", "très triste"]


def test_csv_corpus_with_a_byte_order_mark_reads(tmp_path, policy):
    """Control (strict decoding must not break it): spreadsheet exports start with a UTF-8 byte-order mark."""
    from emorepro.corpus.generic import ingest_generic

    csv = _csv_corpus(tmp_path, "a,a.wav,neu,x,0,1,3\nb,b.wav,sad,y,0,1,2\n", encoding="utf-8-sig")
    assert list(ingest_generic(csv, policy)["utt_id"]) == ["a", "b"]


def test_csv_corpus_segment_and_rating_checks(tmp_path, policy):
    from emorepro.corpus.generic import ingest_generic

    with pytest.raises(InputError, match=r"corpus\.csv:3: segment ends before it starts"):
        ingest_generic(_csv_corpus(tmp_path, "a,a.wav,neu,x,0,1,3\nb,b.wav,sad,y,2,1,2\n"), policy)
    with pytest.raises(InputError, match=r"corpus\.csv:2: .*a\.wav lasts 1\.000 s but its segment"):
        ingest_generic(_csv_corpus(tmp_path, "a,a.wav,neu,x,0,9,3\nb,b.wav,sad,y,0,1,2\n"), policy)
    with pytest.raises(InputError, match=r"column valence: 'high' is not a number"):
        ingest_generic(_csv_corpus(tmp_path, "a,a.wav,neu,x,0,1,high\nb,b.wav,sad,y,0,1,2\n"), policy)


def test_ratings_outside_the_scale_are_clipped_counted_and_do_not_stop_ispas(corpus_copy, tmp_path):
    """Issue 15: a rating outside 1-5 (real releases have a few) must not stop a real run at its first fold."""
    import json

    import numpy as np
    import pandas as pd

    from emorepro import steps
    from emorepro.models.ispas_mm import IspasRecipe
    from emorepro.train import RunContext, TrainConfig
    from tests.conftest import CLASSES, DROP, LABEL_MAP

    f, i, lines = _summary_line(corpus_copy)
    utt = lines[i].split("\t")[1]
    lines[i] = lines[i].rsplit("\t", 1)[0] + "\t[5.5000, 0.5000, 3.0000]"
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "manifest.csv"
    steps.ingest(str(corpus_copy), str(out), fmt="iemocap", label_map=LABEL_MAP, drop_labels=DROP)
    m = pd.read_csv(out, keep_default_na=False).set_index("utt_id")
    assert (m.loc[utt, "valence"], m.loc[utt, "arousal"]) == (5.5, 0.5)          # kept as annotated
    assert (m.loc[utt, "valence_norm"], m.loc[utt, "arousal_norm"]) == (1.0, 0.0)  # clipped to the scale
    warn = json.loads((tmp_path / "manifest.csv.prov.json").read_text())["warnings"]["ratings_outside_scale"]
    assert warn["n_utterances"] == 1 and warn["utt_ids"] == [utt] and warn["by_rating"] == {"valence": 1, "arousal": 1}
    labelled = m[m["label"] != ""]
    ctx = RunContext(manifest=m, splits={"train": list(labelled.index), "val": [], "test": []}, classes=CLASSES,
                     caches={"audio": None, "text": None}, model_params={}, cfg=TrainConfig(data={}), seed=1,
                     device="cpu")
    recipe = IspasRecipe(ctx)   # the Con task's targets: valid whatever the annotation said
    assert np.isfinite(recipe.va["train"]).all() and recipe.va["train"].max() <= 1.0


def test_missing_session_is_a_warning_in_the_sidecar_and_loso5_then_stops_at_n_folds(corpus_copy, tmp_path):
    import json

    from emorepro import steps
    from tests.conftest import DROP, LABEL_MAP

    shutil.rmtree(corpus_copy / "Session3")
    out = tmp_path / "manifest.csv"
    steps.ingest(str(corpus_copy), str(out), fmt="iemocap", label_map=LABEL_MAP, drop_labels=DROP)
    assert json.loads((tmp_path / "manifest.csv.prov.json").read_text())["warnings"]["missing_sessions"] == [3]
    with pytest.raises(InputError, match=r"gives 4 folds \(fold 1: session 1; fold 2: session 2; fold 3: session 4"):
        steps.make_folds(str(out), str(tmp_path / "loso5.csv"), scheme="loso5", val_policy="none", n_folds=5)


def test_non_positive_synth_sizes(tmp_path, capsys):
    from emorepro.corpus.synth_spon import SponSynthConfig

    rc = main(["corpus", "synth", "iemocap", str(tmp_path / "c"), "--turns-per-dialog", "0"])
    assert rc == 2 and "turns_per_dialog must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    with pytest.raises(InputError, match="n_utterances must be >= 1"):
        SponSynthConfig(n_utterances=0)
    with pytest.raises(InputError, match="sessions must be a non-empty list"):
        from emorepro.corpus.synth import SynthConfig
        SynthConfig(sessions=())


# --------------------------------------------------------------------------- config: caught when parsed


def _config(**over):
    import copy

    import yaml

    from tests.conftest import REPO

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())

    def merge(a, b):
        for k, v in b.items():
            a[k] = merge(a.get(k) or {}, v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    cfg = merge(cfg, demo)
    return merge(copy.deepcopy(cfg), over)


def test_preflight_accepts_the_demo_config(tmp_path):
    from emorepro.preflight import check_config

    assert check_config(_config(), tmp_path) == []


@pytest.mark.parametrize("over, key", [
    ({"papers": ["zhang2022", "ispas2032"]}, "config: papers: 'ispas2032'"),
    ({"corpora": {"iemocap": {"root": "/data/IEMOCAP_full_release"}}}, "config: corpora.iemocap: both `root`"),
    ({"classes": ["neu", "hap", "ang", "sad", "neu"]}, "config: classes: ['neu'] listed twice"),
    ({"classes": ["neu", "hap", "ang", "sad", "fea"]}, "config: classes: ['fea'] is the target of no label_map"),
    ({"classes": ["neu", "hap", "ang"]}, "config: corpora.iemocap.label_map maps to ['sad']"),
])
def test_preflight_names_the_config_key(tmp_path, over, key):
    from emorepro.preflight import check_config

    with pytest.raises(InputError) as e:
        check_config(_config(**over), tmp_path)
    assert str(e.value).startswith(key)


def test_preflight_checks_every_configured_checkpoint_directory(tmp_path):
    from emorepro.preflight import check_config

    real = _config(encoders={"hubert_large": {"demo": None}})   # the real config's HuBERT: a local directory
    with pytest.raises(InputError) as e:
        check_config(real, tmp_path)
    assert "encoders.hubert_large.checkpoint" in str(e.value)
    assert str(tmp_path / "checkpoints/hubert-large-ll60k") in str(e.value) and "never looked up" in str(e.value)
    (tmp_path / "checkpoints/hubert-large-ll60k").mkdir(parents=True)
    assert check_config(real, tmp_path) == []


def test_dry_run_of_the_real_config_checks_checkpoint_directories(tmp_path):
    """`snakemake -n` on the real config, its corpora present: a missing checkpoint stops it, naming the key."""
    from tests.workflow_utils import make_workdir, run_snakemake

    wd = make_workdir(tmp_path)
    (wd / "iemocap").mkdir()
    (wd / "spon.csv").write_text("utt_id,wav,label_raw\n")
    (wd / "jtes").mkdir()
    (wd / "here.yaml").write_text(f"corpora:\n  iemocap: {{root: {wd / 'iemocap'}}}\n  spon: {{root: {wd / 'spon.csv'}}}\n"
                                  f"  jtes: {{root: {wd / 'jtes'}}}\n")
    r = run_snakemake(wd, "-n", "--configfile", "here.yaml", check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "encoders.hubert_large.checkpoint" in out and "does not exist" in out
    assert not (wd / "results").exists()


def test_train_refuses_duplicate_or_absent_classes(tmp_path):
    """The library check behind the config check: `classes` must match the labels one to one."""
    import numpy as np
    import pandas as pd

    from emorepro.train import run_training

    m = pd.DataFrame({"utt_id": [f"u{i}" for i in range(8)], "speaker": [f"s{i % 4}" for i in range(8)],
                      "label": ["neu", "sad"] * 4})
    m.to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame({"utt_id": m["utt_id"], "fold": 1, "split": np.where(m["speaker"] == "s0", "test", "train")}).to_csv(
        tmp_path / "f.csv", index=False)
    kw = {"manifest_csv": str(tmp_path / "m.csv"), "folds_csv": str(tmp_path / "f.csv"), "caches": {}, "fold": 1,
          "seed": 1, "model": "zhang_bilstm_att", "model_params": {}, "train": {"selection": "last"},
          "out_dir": str(tmp_path / "o")}
    with pytest.raises(InputError, match=r"classes \['neu', 'sad', 'neu'\] lists a class twice"):
        run_training(classes=["neu", "sad", "neu"], **kw)
    with pytest.raises(InputError, match=r"classes \['hap'\] never occur"):
        run_training(classes=["neu", "hap", "sad"], **kw)
    assert not (tmp_path / "o" / "predictions.csv").exists()


def test_a_relative_checkpoint_is_made_absolute_and_never_looked_up_on_a_hub(tmp_path, monkeypatch, synth_root):
    import transformers

    from emorepro import steps
    from emorepro.provenance import now, write_provenance

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained",
                        lambda *a, **k: calls.append((a, k)) or (_ for _ in ()).throw(OSError("hub")))
    (tmp_path / "m.csv").write_text(f"utt_id,wav,transcript,duration\nu1,{_first_wav(synth_root)},hi,1.0\n")
    write_provenance("m.csv", rule="ingest", params={}, inputs=None, outputs=["m.csv"], started=now())
    spec = {"family": "hubert", "backend": "transformers", "checkpoint": "checkpoints/hubert-large-ll60k",
            "layers": [-1]}
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "checkpoints/hubert-large-ll60k") + " does not exist"):
        steps.extract_features("m.csv", "feat/manifest.json", name="hubert_large", spec=spec)
    assert calls == [], "a local path must never reach the Hub"


def test_fairseq2_checkpoints_load_tensors_only(tmp_path):
    """A checkpoint is loaded with torch.load(weights_only=True): pickled code in it never runs."""
    import torch

    from emorepro.encoders.fairseq2_backend import _load_state_dict

    marker = tmp_path / "code-ran"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _RunsCode(str(marker))}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match="pickled Python objects"):
        _load_state_dict(tmp_path / "model.pt", None)
    assert not marker.exists()


class _RunsCode:
    """Unpickling this writes a file: what an untrusted checkpoint could do with weights_only=False."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_atomic_dir_replaces_whole_or_not_at_all(tmp_path):
    """A directory output (checkpoints, kept encoders) is swapped in complete; a failure leaves the old one."""
    from emorepro.io import atomic_dir

    out = tmp_path / "ckpt"
    with atomic_dir(out) as d:
        (d / "a.bin").write_text("1")
    assert (out / "a.bin").read_text() == "1" and (out.stat().st_mode & 0o777) != 0o700
    with pytest.raises(RuntimeError, match="boom"), atomic_dir(out) as d:
        (d / "a.bin").write_text("2")
        raise RuntimeError("boom")
    assert (out / "a.bin").read_text() == "1"
    with atomic_dir(out) as d:
        (d / "b.bin").write_text("3")
    assert sorted(p.name for p in out.iterdir()) == ["b.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"], "no temporary directory left behind"
