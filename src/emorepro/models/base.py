"""The training contract between the loop and the model families: :class:`Recipe` and :class:`RunContext`.

One way through training (issue 12): :mod:`emorepro.train` imports the families; a family imports
this module (and torch, numpy, :mod:`emorepro.io`, :mod:`emorepro.metrics`) and **never** the loop,
the encoder backends or the feature cache.  Everything a family needs arrives in its
:class:`RunContext`:

* ``ctx.caches[role]``: frozen-encoder feature caches (``.layer(utt, i)``, ``.dim``...), opened by the loop;
* ``ctx.encoders[role]``: fine-tunable encoders (``train.finetune.<role>``), loaded by the loop from
  the checkpoint of the encoder that ``inputs.<role>`` names (see :mod:`emorepro.encoders.finetune`
  for their methods: ``collate``/``tokenize``, ``forward``, ``span_mask``, ``frame_lengths``);
* ``ctx.audio(utt_id)``: the utterance's waveform (16 kHz mono float32, read through
  :mod:`emorepro.audio`); ``ctx.transcript(utt_id)``: its transcript;
* ``ctx.manifest``, ``ctx.splits``, ``ctx.classes``, ``ctx.labels(split)``, ``ctx.model_params``,
  ``ctx.cfg`` (:class:`TrainConfig`), ``ctx.seed``, ``ctx.fold``, ``ctx.device``, ``ctx.run_dir``,
  ``ctx.extra_inputs`` (named extra files the rule declares, e.g. pseudo-labels).

How a family uses the engine
----------------------------
A family is one module under ``emorepro/models/`` with a dataclass config, an ``nn.Module`` (shape
comments) and a :class:`Recipe` subclass, registered in :data:`emorepro.models.MODELS`::

    class MyRecipe(Recipe):
        input_keys = ("wav", "wav_lens")                  # the batch keys forward() takes

        def build(self):                                   # heads + the encoders the loop handed over
            enc = self.ctx.encoders["audio"]
            return MyNet(MyConfig(**self.ctx.model_params), enc)   # enc becomes a submodule

        def batch(self, split, idx):                       # idx: positions in ctx.splits[split]
            utts = [self.ctx.splits[split][i] for i in idx]
            # crops follow the mode the loop sets (net.train() / net.eval()), not the split name
            b = self.ctx.encoders["audio"].collate([self.ctx.audio(u) for u in utts], device=self.ctx.device)
            b["label"] = torch.from_numpy(self.ctx.labels(split)[idx]).to(self.ctx.device)
            return b

        def loss(self, out, batch, epoch):                 # out = net(**{k: batch[k] for k in input_keys})
            return F.cross_entropy(out["logits"], batch["label"])

``forward`` returns a dict with ``"logits"`` (B, C); an ``"embedding"`` (B, D) is saved per utterance
when ``train.save_embeddings`` lists the split (Lee et al.'s intermediate concatenation).
Optional hooks: :meth:`Recipe.training_set` (a different training set, e.g. a stratified half or
augmented copies: the loop replaces ``splits["train"]`` with it and records both counts),
:meth:`Recipe.on_epoch_start`, :meth:`Recipe.parameter_groups`, :meth:`Recipe.extra_columns`.

What the loop does with ``train`` (:class:`TrainConfig`): Adam or AdamW (``optimizer``), learning
rates per module prefix (``param_groups``), gradient accumulation (``accum_steps``), clipping,
evaluation every epoch or every N optimiser steps (``eval_every``), a step budget (``max_steps``),
selection of the checkpoint (``selection``: ``last``, ``val_uar``, ``val_ccc``, or the labelled
test-set oracles ``test_uar_oracle``/``test_war_oracle``), starting from another run of the same
fold and seed (``init_from``, a file dependency in the DAG), and what the run keeps
(``keep_model``, ``save_embeddings``).  docs/usage.md ("Training engine") has the full list.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: selection rules that look at test labels: allowed only as labelled variants (tables mark them)
ORACLE_SELECTIONS = ("test_uar_oracle", "test_war_oracle")
SELECTIONS = ("last", "val_uar", "val_ccc", *ORACLE_SELECTIONS)


@dataclass
class TrainConfig:
    """``experiments.<paper>.<variant>.train``: every key is documented in config/schema.yaml."""

    epochs: int = 100               # Zhang et al.: 100 epochs
    batch_size: int = 32            # utterances per forward/backward (a micro-batch when accum_steps > 1)
    lr: float = 1e-4                # Adam 1e-4
    weight_decay: float = 1e-5      # "1e-5 decay rate", read as L2 weight decay (decoupled with adamw)
    optimizer: str = "adam"         # "adam" (L2 in the gradient) or "adamw" (decoupled weight decay)
    param_groups: dict[str, dict[str, float]] = field(default_factory=dict)  # name prefix -> {lr, weight_decay}
    accum_steps: int = 1            # micro-batches per optimiser step (MMER: batch 4 x 4)
    grad_clip: float | None = None  # max gradient norm (Ispas et al.: 1.0)
    eval_every: int | None = None   # None: evaluate after every epoch; N: every N optimiser steps (and at the end)
    max_steps: int | None = None    # stop after this many optimiser steps (epochs is then an upper bound)
    selection: str = "val_uar"      # one of SELECTIONS
    selection_corpus: str | None = None   # score the selection on this corpus's utterances only (union corpora)
    eval_batch_size: int | None = None    # None: batch_size
    init_from: str | None = None    # "<paper>/<variant>": start from that experiment's run of the same fold and seed
    init_modules: list[str] | None = None  # parameter-name prefixes taken from the parent (None: all it has)
    keep_model: bool = False        # keep the selected weights (heads in model.pt, fine-tuned encoders as checkpoints)
    save_embeddings: list[str] = field(default_factory=list)   # splits whose out["embedding"] go to embeddings.npz
    finetune: dict[str, dict[str, Any]] | None = field(default_factory=dict)   # role -> fine-tunable encoder options
    data: dict[str, Any] = field(default_factory=dict)   # recipe-specific data options
    loss: dict[str, Any] = field(default_factory=dict)   # recipe-specific loss options

    def __post_init__(self):
        from ..io import InputError

        self.finetune = dict(self.finetune or {})          # the schema's default is null
        self.save_embeddings = list(self.save_embeddings or [])
        self.param_groups = dict(self.param_groups or {})
        if self.selection not in SELECTIONS:
            raise InputError(f"config: train.selection must be one of {list(SELECTIONS)}, got {self.selection!r}")
        if self.optimizer not in ("adam", "adamw"):
            raise InputError(f"config: train.optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        if self.accum_steps < 1:
            raise InputError(f"config: train.accum_steps must be >= 1, got {self.accum_steps}")
        if self.eval_every is not None and self.eval_every < 1:
            raise InputError(f"config: train.eval_every must be >= 1 optimiser steps or null, got {self.eval_every}")
        bad = sorted(set(self.save_embeddings) - {"train", "val", "test"})
        if bad:
            raise InputError(f"config: train.save_embeddings: {bad} are not splits (train, val, test)")
        for prefix, g in self.param_groups.items():
            unknown = sorted(set(g) - {"lr", "weight_decay"})
            if unknown:
                raise InputError(f"config: train.param_groups.{prefix}: unknown key(s) {unknown} (lr, weight_decay)")

    @property
    def is_oracle(self) -> bool:
        return self.selection in ORACLE_SELECTIONS


@dataclass
class RunContext:
    """Everything a recipe may read about its run (no Snakemake, no global config)."""

    manifest: Any                   # pandas DataFrame, indexed by utt_id
    splits: dict[str, list[str]]    # split -> utterance ids (train/val/test); train = the recipe's training set
    classes: list[str]
    caches: dict[str, Any]          # role -> FeatureCache (frozen features)
    model_params: dict[str, Any]
    cfg: TrainConfig
    seed: int
    device: str
    encoders: dict[str, Any] = field(default_factory=dict)   # role -> fine-tunable encoder module
    audio: Callable[[str], np.ndarray] | None = None         # utt_id -> waveform (16 kHz mono float32)
    fold: int = 0
    run_dir: Path | None = None
    extra_inputs: dict[str, str] = field(default_factory=dict)

    def labels(self, split: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[self.manifest.at[u, "label"]] for u in self.splits[split]], dtype=np.int64)

    def transcript(self, utt_id: str) -> str:
        t = self.manifest.at[utt_id, "transcript"]
        return t if isinstance(t, str) else ""


class Recipe:
    """Per-family glue between the run's inputs and a model.  Subclasses implement:

    ``build() -> nn.Module``; ``batch(split, idx) -> dict`` of tensors (with ``"label"``);
    ``loss(out, batch, epoch) -> Tensor`` (a mean over the batch: accumulation weights each
    micro-batch by its share of the step's samples); optionally ``on_epoch_start(epoch, net)``,
    ``parameter_groups(net)`` and ``extra_columns(split, outs) -> dict[str, array]`` for
    predictions.csv (0-d values go to the training log only).
    The model's ``forward(**inputs)`` must return a dict with ``"logits"``.
    """

    input_keys: tuple[str, ...] = ()
    #: input roles this family can fine-tune (``train.finetune``): tests build every such family from
    #: real-shaped base-size checkpoints (tests/test_real_shapes.py) and benchmarks/real_shapes.py runs them
    finetune_roles: tuple[str, ...] = ()

    def __init__(self, ctx: RunContext):
        self.ctx = ctx

    @classmethod
    def training_set(cls, ctx: RunContext) -> list[str] | None:
        """The utterances to train on, if not the fold's training split (None).

        Called by the loop before the recipe is built; the loop then sets ``ctx.splits["train"]``
        to the result and records the fold's and the used counts in the run summary.
        """
        return None

    def build(self):  # pragma: no cover - interface
        raise NotImplementedError

    def batch(self, split: str, idx: np.ndarray) -> dict:  # pragma: no cover - interface
        raise NotImplementedError

    def loss(self, out: dict, batch: dict, epoch: int):  # pragma: no cover - interface
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, net) -> None:
        pass

    def parameter_groups(self, net) -> list[dict] | None:
        """Optimiser parameter groups (torch format), or None for ``train.param_groups`` / one group."""
        return None

    def extra_columns(self, split: str, outs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {}


def masked_mean(x, mask):
    """Mean over the time axis of real positions only: x (B, T, d), mask (B, T) bool -> (B, d)."""
    m = mask.to(x.dtype)[..., None]                                     # (B, T, 1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def masked_max(x, mask):
    """Max over the time axis of real positions only: x (B, T, d), mask (B, T) bool -> (B, d)."""
    return x.masked_fill(~mask[..., None], float("-inf")).amax(1)
