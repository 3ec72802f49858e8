"""Shared fixtures: a small synthetic IEMOCAP-layout corpus, generated once per session."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
LABEL_MAP = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
DROP = ["fru", "sur", "fea", "dis", "oth", "xxx"]
CLASSES = ["neu", "hap", "ang", "sad"]


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A read-only synthetic release (5 sessions, 10 turns per dialog). Copy before mutating."""
    from emorepro.corpus.synth import SynthConfig, synthesize_iemocap

    root = tmp_path_factory.mktemp("corpus") / "IEMOCAP_full_release"
    synthesize_iemocap(root, SynthConfig(seed=0, turns_per_dialog=10))
    return root


@pytest.fixture
def corpus_copy(synth_root, tmp_path) -> Path:
    """A private, mutable copy of the synthetic release."""
    dst = tmp_path / "IEMOCAP_full_release"
    shutil.copytree(synth_root, dst)
    return dst


@pytest.fixture(scope="session")
def policy():
    from emorepro.corpus.iemocap import LabelPolicy

    return LabelPolicy(LABEL_MAP, frozenset(DROP))


@pytest.fixture(scope="session")
def manifest(synth_root, policy):
    from emorepro.corpus.iemocap import ingest_iemocap

    return ingest_iemocap(synth_root, policy)


def pytest_addoption(parser):
    parser.addoption("--update-snapshots", action="store_true",
                     help="rewrite tests/snapshots/*.yaml from this run instead of comparing with them")


@pytest.fixture(scope="session")
def hubert(tmp_path_factory):
    """A tiny random-init HuBERT checkpoint directory (the demo encoder's class), built offline."""
    pytest.importorskip("transformers")
    from emorepro.encoders.demo import make_demo_checkpoint

    d = tmp_path_factory.mktemp("ckpt") / "hubert"
    make_demo_checkpoint("hubert", str(d), seed=0)
    return d
