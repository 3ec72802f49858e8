"""Model registry: config names a model by key; nothing is ever evaluated from a string.

Each family lives in its own module (a dataclass config, the ``nn.Module``, and the
:class:`~emorepro.models.base.Recipe` that feeds it from its run context: feature caches,
fine-tunable encoders, waveforms; see :mod:`emorepro.models.base`).  Entries are
loaded lazily so that looking up one family does not import the others.

An entry also names the dataclasses that hold its recipe's ``train.data`` and ``train.loss``
options (None: the recipe takes none).  :meth:`ModelEntry.option_names` reads the accepted keys
of all three from the source (:mod:`emorepro.models.static`), without importing torch, so that
the workflow rejects a misspelt key when it is parsed (:func:`emorepro.config.check_config`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    module: str        # module under emorepro.models
    model: str         # nn.Module class
    config: str        # dataclass config
    recipe_name: str   # Recipe subclass
    inputs: tuple[str, ...]  # cache roles the recipe reads, e.g. ("audio",) or ("audio", "text")
    data: str | None = None  # dataclass of the recipe's train.data options (None: it takes none)
    loss: str | None = None  # dataclass of the recipe's train.loss options (None: it takes none)

    def _get(self, name: str):
        return getattr(importlib.import_module(f"emorepro.models.{self.module}"), name)

    @property
    def model_cls(self):
        return self._get(self.model)

    @property
    def config_cls(self):
        return self._get(self.config)

    @property
    def recipe(self):
        return self._get(self.recipe_name)

    def option_names(self, kind: str) -> tuple[str, ...]:
        """Accepted keys of ``model_params`` (kind "model_params"), ``train.data`` or ``train.loss``, torch-free."""
        from .static import dataclass_params

        cls = {"model_params": self.config, "data": self.data, "loss": self.loss}[kind]
        return dataclass_params(f"emorepro.models.{self.module}", cls) if cls else ()


MODELS: dict[str, ModelEntry] = {
    "zhang_bilstm_att": ModelEntry("zhang_bilstm", "ZhangBiLSTM", "ZhangConfig", "ZhangRecipe", ("audio",),
                                   data="ZhangData"),
    # The same network; the recipe adds the style head/loss, selective masking and "half" data.
    "zhang_bilstm_att_mtl": ModelEntry("zhang_mtl", "ZhangBiLSTM", "ZhangConfig", "ZhangStyleRecipe", ("audio",),
                                       data="ZhangStyleData", loss="StyleLoss"),
    "ispas_mm": ModelEntry("ispas_mm", "IspasMM", "IspasConfig", "IspasRecipe", ("audio", "text"), data="IspasData"),
    # Lee et al. (2023): FE (fine-tuned HuBERT, or a head on cached frames) + EC + DC behind a gradient scale.
    "lee_dann": ModelEntry("lee_dann", "LeeDANN", "LeeConfig", "LeeRecipe", ("audio",), data="LeeData", loss="LeeLoss"),
    # MMER (Ghosh et al.): one network for Table 1's rows; the unimodal baselines read one input role.
    "mmer": ModelEntry("mmer", "MMERNet", "MMERConfig", "MMERRecipe", ("audio", "text"), data="MMERData",
                       loss="MMERLoss"),
    "mmer_audio": ModelEntry("mmer", "MMERNet", "MMERConfig", "MMERAudioRecipe", ("audio",), data="MMERData",
                             loss="MMERLoss"),
    "mmer_text": ModelEntry("mmer", "MMERNet", "MMERConfig", "MMERTextRecipe", ("text",), data="MMERData",
                            loss="MMERLoss"),
    # Pan et al. (GMP-ATL): stages 1 and 3 (head ams|ce, gender head in stage 1), and stage 2's masked prediction.
    "gmp_atl": ModelEntry("gmp_atl", "GmpHeads", "GmpConfig", "GmpRecipe", ("audio",), loss="GmpLoss"),
    "gmp_atl_retrain": ModelEntry("gmp_atl", "GmpRetrainNet", "GmpRetrainConfig", "GmpRetrainRecipe", ("audio",),
                                  data="GmpRetrainData", loss="GmpRetrainLoss"),
}


def get_model(name: str) -> ModelEntry:
    if name not in MODELS:
        raise KeyError(f"config: model {name!r} unknown; registered: {sorted(MODELS)}")
    return MODELS[name]


def build_model(name: str, params: dict[str, Any]):
    """Instantiate a registered model from config parameters (unknown keys are an error)."""
    entry = get_model(name)
    cfg_cls = entry.config_cls
    unknown = set(params) - set(cfg_cls.__dataclass_fields__)
    if unknown:
        raise KeyError(f"config: model {name!r} has no parameter(s) {sorted(unknown)}; "
                       f"known: {sorted(cfg_cls.__dataclass_fields__)}")
    cfg = cfg_cls(**params)
    return entry.model_cls(cfg), cfg
