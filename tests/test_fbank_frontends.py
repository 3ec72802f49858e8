"""The two log-mel front-ends: python_speech_features (Zhang et al.'s) and Kaldi's, and their cache."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from emorepro.encoders import EncoderSpec, load_encoder

SR = 16_000
PSF = EncoderSpec("fbank40", "fbank", "python_speech_features", layers=(0,), options={"num_mel_bins": 40})
KALDI = EncoderSpec("fbank40_kaldi", "fbank", "kaldi_fbank", layers=(0,), options={"num_mel_bins": 40})


def _speechlike(n, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t)) + 0.02 * rng.standard_normal(n)
    return x.astype(np.float32)


def test_psf_backend_is_the_packages_logfbank_with_40_filters_on_int16_samples():
    import python_speech_features as psf

    enc = load_encoder(PSF)
    x = _speechlike(23_456)
    got = enc.encode([x])[0]
    # Every setting but nfilt is the package's logfbank default; samples on the int16 scale.
    want = psf.logfbank(x.astype(np.float64) * 32768.0, samplerate=SR, nfilt=40)
    assert got.shape == (1, len(want), 40) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0], want.astype(np.float32))
    # input_scale: unit feeds [-1, 1]: the same features minus 2 ln 32768 (nothing is floored here).
    unit = load_encoder(EncoderSpec("u", "fbank", "python_speech_features", layers=(0,),
                                    options={"input_scale": "unit"})).encode([x])[0]
    np.testing.assert_allclose(got - unit, 2 * math.log(32768.0), atol=1e-3)
    # A window is the package's fbank winfunc.
    ham = load_encoder(EncoderSpec("h", "fbank", "python_speech_features", layers=(0,),
                                   options={"window": "hamming"})).encode([x])[0]
    ref = np.log(psf.fbank(x.astype(np.float64) * 32768.0, samplerate=SR, nfilt=40, winfunc=np.hamming)[0])
    np.testing.assert_allclose(ham[0], ref, rtol=1e-6)
    assert np.abs(ham - got).max() > 0.1


@pytest.mark.parametrize("n", [0, 1, 399, 400, 401, 559, 560, 561, 16_000])
def test_psf_frame_count_pads_the_last_frame(n):
    enc = load_encoder(PSF)
    got = enc.encode([_speechlike(n)])[0]
    assert got.shape[1] == enc.output_frames(n) == (0 if n == 0 else 1 if n <= 400 else 1 + math.ceil((n - 400) / 160))
    kaldi = load_encoder(KALDI).output_frames(n)
    assert got.shape[1] - kaldi in (0, 1)   # one frame more than Kaldi for most lengths (its last is zero-padded)


def test_psf_options_are_checked():
    with pytest.raises(ValueError, match=r"encoders\.bad\.options: unknown \['nfilt'\]"):
        load_encoder(EncoderSpec("bad", "fbank", "python_speech_features", layers=(0,), options={"nfilt": 40}))
    with pytest.raises(ValueError, match="window"):
        load_encoder(EncoderSpec("bad", "fbank", "python_speech_features", layers=(0,), options={"window": "povey"}))
    with pytest.raises(ValueError, match="single output"):
        load_encoder(EncoderSpec("bad", "fbank", "python_speech_features", layers=(3,)))
    with pytest.raises(ValueError, match="does not support family"):
        load_encoder(EncoderSpec("bad", "hubert", "python_speech_features"))


def test_psf_features_through_the_cache(tmp_path):
    import soundfile as sf

    from emorepro.features.cache import FeatureCache, extract_to_cache, read_wav

    rows = []
    for i, n in enumerate((16_000, 7_000, 30_000, 401)):
        p = tmp_path / f"u{i}.wav"
        sf.write(p, _speechlike(n, seed=i), SR, subtype="PCM_16")
        rows.append([f"u{i}", str(p), f"{n / SR:.5f}"])
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows([["utt_id", "wav", "duration"], *rows])
    out = tmp_path / "cache"
    rep = extract_to_cache(str(tmp_path / "manifest.csv"), PSF, str(out), progress=False)
    man = json.loads((out / "manifest.json").read_text())
    assert rep["complete"] and man["encoder"]["backend"] == "python_speech_features" and man["dim"] == 40
    assert man["versions"]["python_speech_features"] == "0.6"
    cache, enc = FeatureCache(out), load_encoder(PSF)
    for u, wav, _ in rows:
        ref = enc.encode([read_wav(wav)])[0]
        got = cache[u]
        assert got.shape == ref.shape
        np.testing.assert_allclose(got.astype(np.float32), ref, rtol=1e-3, atol=2e-2)


def test_real_config_fbank40_is_logfbank_with_its_defaults_and_40_filters():
    """config/config.yaml writes python_speech_features' defaults out; they must stay its defaults."""
    import python_speech_features as psf
    import yaml

    from tests.workflow_utils import REPO

    enc_cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())["encoders"]
    assert enc_cfg["fbank40"]["backend"] == "python_speech_features"
    assert enc_cfg["fbank40_kaldi"]["backend"] == "kaldi_fbank"
    x = _speechlike(12_345, seed=5)
    got = load_encoder(EncoderSpec.from_dict("fbank40", {**enc_cfg["fbank40"], "layers": [0]})).encode([x])[0][0]
    np.testing.assert_array_equal(got, psf.logfbank(x.astype(np.float64) * 32768.0, samplerate=SR, nfilt=40)
                                  .astype(np.float32))
