"""Model registry: config names a model by key, never by evaluated code.

Each family lives in its own module with a dataclass config; importing this package
imports torch (models are torch modules) but nothing heavier.
"""
from __future__ import annotations

from typing import Any


def _zhang():
    from .zhang_bilstm import ZhangBiLSTM, ZhangConfig
    return ZhangBiLSTM, ZhangConfig


# name -> loader returning (model class, config dataclass).  Loaders keep imports lazy.
MODELS = {
    "zhang_bilstm_att": _zhang,
}


def build_model(name: str, params: dict[str, Any]):
    if name not in MODELS:
        raise KeyError(f"config: model {name!r} unknown; registered: {sorted(MODELS)}")
    cls, cfg_cls = MODELS[name]()
    known = set(cfg_cls.__dataclass_fields__)
    unknown = set(params) - known
    if unknown:
        raise KeyError(f"config: model {name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    cfg = cfg_cls(**params)
    return cls(cfg), cfg
