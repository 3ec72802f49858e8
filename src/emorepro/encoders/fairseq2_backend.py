"""fairseq2 backend for the wav2vec 2.0 family (fairseq2 0.8.1 has no HuBERT model).

Checkpoint format (a local directory, ``spec.checkpoint``)
---------------------------------------------------------
``fairseq2_wav2vec2.json``::

    {"format": "emorepro-fairseq2-wav2vec2/1",
     "encoder_config": {<fields of fairseq2.models.wav2vec2.Wav2Vec2EncoderConfig>,
                        "norm_order": "POST" | "PRE"},
     "do_normalize": true,           # per-utterance zero-mean/unit-var of the waveform
     "source": "..."}                # free text: where the weights came from

``model.pt``: a ``torch.save``'d state dict with fairseq2's parameter names for
``Wav2Vec2Model`` (``encoder_frontend.*``, ``encoder.*``).  Accepted variants: a fairseq2
training checkpoint ``{"model": state_dict}``, a full ``Wav2Vec2Model`` state dict (the
pre-training-only modules ``masker``/``quantizer``/``final_proj``/``final_target_proj`` are
ignored), or an original fairseq (v1) wav2vec2 checkpoint, converted on load with
``fairseq2.models.wav2vec2.convert_wav2vec2_state_dict``.

(The fairseq v1 conversion path is fairseq2's own code and is not exercised by our tests:
no v1 checkpoint is available offline.)

Asset card (``spec.checkpoint`` ending in ``.yaml``/``.yml``)
    a fairseq2 asset card (``name``, ``model_family: wav2vec2``, ``model_arch``
    (``base``/``large``/``large_lv60k``), optional ``model_config`` overrides, ``checkpoint``:
    ``file://`` URI or a path relative to the card, optional ``do_normalize``), loaded with
    fairseq2's own ``get_wav2vec2_model_hub().load_model(card)``; only its ``encoder_frontend``
    and ``encoder`` are used.  :func:`write_fairseq2_asset_card` makes one from a converted
    directory.  ``do_normalize`` defaults to False for ``base``/``large`` (trained on raw
    waveforms) and True otherwise.

:func:`convert_hf_wav2vec2_to_fairseq2` writes the directory format from a transformers
``Wav2Vec2Model``/``Wav2Vec2ForCTC`` directory (HuBERT directories convert as well: the
encoder architecture is the same).

Outputs are shaped exactly like the transformers backend: ``hidden_states[0]`` is the
frontend output (CNN -> layer norm -> projection -> conv positional encoding [-> layer
norm for post-norm models]), ``hidden_states[i]`` the output of encoder layer ``i``, and
for pre-norm models (``norm_order=PRE``, e.g. wav2vec2-large-lv60) the last one has the
encoder's final layer norm applied, as in transformers' ``Wav2Vec2EncoderStableLayerNorm``.
As in the transformers backend the CNN runs per utterance (GroupNorm over time is not
padding-invariant) and the transformer on the padded batch with a ``BatchLayout``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..audio import conv_receptive_field, prepare_waveform
from .base import Encoder, EncoderSpec
from .transformers_backend import resolve_layers

FORMAT = "emorepro-fairseq2-wav2vec2/1"
CONFIG_FILE = "fairseq2_wav2vec2.json"
WEIGHTS_FILE = "model.pt"
_PRETRAIN_ONLY = ("masker.", "quantizer.", "final_proj.", "final_target_proj.")


def _encoder_config(fields: dict):
    from fairseq2.models.transformer import TransformerNormOrder
    from fairseq2.models.wav2vec2 import Wav2Vec2EncoderConfig

    f = dict(fields)
    if isinstance(f.get("norm_order"), str):
        f["norm_order"] = TransformerNormOrder[f["norm_order"]]
    if "feature_extractor_layer_descs" in f:
        f["feature_extractor_layer_descs"] = [tuple(d) for d in f["feature_extractor_layer_descs"]]
    known = {x.name for x in dataclasses.fields(Wav2Vec2EncoderConfig)}
    unknown = sorted(set(f) - known)
    if unknown:
        raise ValueError(f"unknown Wav2Vec2EncoderConfig field(s) {unknown}")
    # frozen feature extraction: no dropout, no LayerDrop
    f.update(dropout_p=0.0, attn_dropout_p=0.0, ffn_inner_dropout_p=0.0, first_pass_dropout_p=0.0, layer_drop_p=0.0)
    return Wav2Vec2EncoderConfig(**f)


def _config_to_json(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    d["norm_order"] = cfg.norm_order.name
    d["feature_extractor_layer_descs"] = [list(x) for x in cfg.feature_extractor_layer_descs]
    return d


def _ensure_fairseq2_initialised() -> None:
    """``init_fairseq2()`` once per process (the model hub needs it; it refuses a second call)."""
    from fairseq2 import init_fairseq2
    from fairseq2.error import InvalidOperationError

    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fairseq2-internal deprecations
            init_fairseq2(no_progress=True)
    except InvalidOperationError:
        pass


class _Wav2Vec2EncoderModel(torch.nn.Module):
    """The inference part of fairseq2's ``Wav2Vec2Model``, with the same parameter names."""

    def __init__(self, cfg):
        super().__init__()
        from fairseq2.models.wav2vec2 import Wav2Vec2EncoderFactory

        factory = Wav2Vec2EncoderFactory(cfg)
        self.encoder_frontend = factory.create_encoder_frontend()
        self.encoder = factory.create_encoder()


def build_encoder_model(cfg) -> torch.nn.Module:
    _ensure_fairseq2_initialised()  # fairseq2 layers look up the runtime (gangs) when built
    return _Wav2Vec2EncoderModel(cfg)


def _load_state_dict(path: Path, cfg) -> dict:
    try:   # a user's file: load tensors only, never run pickled code
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: holds pickled Python objects besides tensors (an original fairseq checkpoint "
                         "keeps its args/cfg), which are not loaded from a file that could run code. If you trust it, "
                         "save its state dict alone: torch.save(torch.load(p, weights_only=False)['model'], out)") from e
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if "mask_emb" in sd or "mask_emb.weight" in sd:  # original fairseq checkpoint
        from fairseq2.models.wav2vec2 import Wav2Vec2Config, convert_wav2vec2_state_dict

        sd = convert_wav2vec2_state_dict(dict(sd), Wav2Vec2Config(encoder_config=cfg))
    return {k: v for k, v in sd.items() if not k.startswith(_PRETRAIN_ONLY)}


class Fairseq2Wav2Vec2Encoder(Encoder):
    def __init__(self, spec: EncoderSpec, device: str = "cpu"):
        self.spec = spec
        self.device = device
        if not spec.checkpoint:
            raise ValueError(f"encoder {spec.name!r}: no checkpoint given")
        d = Path(spec.checkpoint)
        if d.suffix in (".yaml", ".yml"):
            self._init_from_asset_card(d)
            return
        missing = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if not (d / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"encoder {spec.name!r}: fairseq2 checkpoint directory {d} "
                + ("does not exist" if not d.is_dir() else f"is missing {', '.join(missing)}")
                + f"; expected {CONFIG_FILE} (Wav2Vec2EncoderConfig fields) and {WEIGHTS_FILE} (state dict); "
                "convert_hf_wav2vec2_to_fairseq2() writes this layout")
        meta = json.loads((d / CONFIG_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{d / CONFIG_FILE}: format {meta.get('format')!r}, expected {FORMAT!r}")
        cfg = _encoder_config(meta["encoder_config"])
        model = build_encoder_model(cfg)
        sd = _load_state_dict(d / WEIGHTS_FILE, cfg)
        res = model.load_state_dict(sd, strict=False)
        if res.missing_keys or res.unexpected_keys:
            raise ValueError(f"encoder {spec.name!r}: {d / WEIGHTS_FILE} does not match the config in {CONFIG_FILE}: "
                             f"missing {res.missing_keys[:5]}, unexpected {res.unexpected_keys[:5]}")
        self._finish(model, cfg, meta.get("do_normalize", True))

    def _init_from_asset_card(self, card_path: Path) -> None:
        """Load through fairseq2's own model hub from a local asset card (YAML)."""
        import yaml
        from fairseq2.assets import AssetCard
        from fairseq2.models.wav2vec2 import get_wav2vec2_model_hub

        spec = self.spec
        if not card_path.is_file():
            raise FileNotFoundError(f"encoder {spec.name!r}: asset card {card_path} does not exist")
        meta = yaml.safe_load(card_path.read_text())
        missing = [k for k in ("name", "model_family", "model_arch", "checkpoint") if k not in (meta or {})]
        if missing:
            raise ValueError(f"{card_path}: asset card lacks field(s) {missing}")
        if meta["model_family"] != "wav2vec2":
            raise ValueError(f"{card_path}: model_family {meta['model_family']!r}, expected 'wav2vec2'")
        ckpt = str(meta["checkpoint"])
        if "://" not in ckpt:
            p = Path(ckpt) if os.path.isabs(ckpt) else (card_path.parent / ckpt)
            if not p.is_file():
                raise FileNotFoundError(f"{card_path}: checkpoint {p} does not exist")
            meta["checkpoint"] = p.resolve().as_uri()
        _ensure_fairseq2_initialised()
        full = get_wav2vec2_model_hub().load_model(AssetCard(str(meta["name"]), meta), device=torch.device("cpu"))
        model = torch.nn.Module()
        model.encoder_frontend, model.encoder = full.encoder_frontend, full.encoder
        cfg = full.encoder_config if hasattr(full, "encoder_config") else None
        if cfg is None:
            cfg = get_wav2vec2_model_hub().get_model_config(AssetCard(str(meta["name"]), meta)).encoder_config
        default_norm = meta.get("do_normalize", {"base": False, "large": False}.get(meta["model_arch"], True))
        self._finish(model, cfg, default_norm)

    def _finish(self, model: torch.nn.Module, cfg, do_normalize_default: bool) -> None:
        spec, device = self.spec, self.device
        if cfg.use_fbank or cfg.use_conformer or cfg.pos_encoder_type != "conv":
            raise NotImplementedError(f"encoder {spec.name!r}: only waveform input, conv positional encoding and "
                                      "Transformer (not Conformer) encoders are supported")
        self.cfg = cfg
        self.model = model.eval().requires_grad_(False).to(device)
        self.dim = int(cfg.model_dim)
        self.n_hidden = int(cfg.num_encoder_layers) + 1
        self.resolved_layers = resolve_layers(spec.layers, self.n_hidden, spec.name)
        self.do_normalize = bool(spec.options.get("do_normalize", do_normalize_default))
        descs = cfg.feature_extractor_layer_descs
        self.min_samples = conv_receptive_field([k for _, k, _ in descs], [s for _, _, s in descs])
        self.frames_per_second = 16000.0 / float(np.prod([s for _, _, s in descs]))

    def encode(self, items: Sequence[Any]) -> list[np.ndarray]:
        from fairseq2.nn import BatchLayout

        if not items:
            return []
        fe, enc = self.model.encoder_frontend, self.model.encoder
        with torch.inference_mode():
            feats = []
            for w in items:
                x = prepare_waveform(w, normalize=self.do_normalize, min_samples=self.min_samples, name=self.spec.name)
                t = torch.from_numpy(x).to(self.device)[None]
                f, _, _ = fe.extract_features(t, BatchLayout(tuple(t.shape), None, device=t.device))
                feats.append(f[0])
            lens = [f.shape[0] for f in feats]
            B, T = len(feats), max(lens)
            padded = feats[0].new_zeros((B, T, feats[0].shape[1]))
            for i, f in enumerate(feats):
                padded[i, : lens[i]] = f
            layout = BatchLayout((B, T), lens, device=padded.device)
            seqs, _ = fe.process_features(padded, layout)
            hidden = [seqs]

            def hook(layer_idx, out, out_layout, num_layers):
                if layer_idx < num_layers - 1:
                    hidden.append(out)
                return True

            handle = enc.register_layer_hook(hook)
            try:
                hidden.append(enc(seqs, layout))  # last layer, after the final layer norm when PRE
            finally:
                handle.remove()
            sel = torch.stack([hidden[l] for l in self.resolved_layers], dim=1).float().cpu().numpy()
        return [np.ascontiguousarray(sel[i, :, : lens[i]]) for i in range(B)]


# --------------------------------------------------------------------------- conversion


def hf_to_fairseq2_key_map(n_layers: int, n_conv: int, stable_layer_norm: bool, conv_norm: str) -> dict[str, str]:
    """transformers ``Wav2Vec2Model``/``HubertModel`` parameter name -> fairseq2 ``Wav2Vec2Model`` name.

    ``conv_norm``: ``"group"`` (GroupNorm in the first conv layer only; transformers calls it
    ``layer_norm`` too) or ``"layer"`` (LayerNorm after every conv).
    ``stable_layer_norm``: pre-norm encoder; its top-level ``encoder.layer_norm`` is then the
    final layer norm (fairseq2 ``encoder.layer_norm``), else the post-positional-encoding
    layer norm (fairseq2 ``encoder_frontend.layer_norm``).
    """
    m = {
        "feature_projection.layer_norm.weight": "encoder_frontend.post_extract_layer_norm.weight",
        "feature_projection.layer_norm.bias": "encoder_frontend.post_extract_layer_norm.bias",
        "feature_projection.projection.weight": "encoder_frontend.model_dim_proj.weight",
        "feature_projection.projection.bias": "encoder_frontend.model_dim_proj.bias",
        "encoder.pos_conv_embed.conv.bias": "encoder_frontend.pos_encoder.conv.bias",
        "encoder.pos_conv_embed.conv.weight_g": "encoder_frontend.pos_encoder.conv.weight_g",
        "encoder.pos_conv_embed.conv.weight_v": "encoder_frontend.pos_encoder.conv.weight_v",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original0": "encoder_frontend.pos_encoder.conv.weight_g",
        "encoder.pos_conv_embed.conv.parametrizations.weight.original1": "encoder_frontend.pos_encoder.conv.weight_v",
    }
    top_ln = "encoder.layer_norm" if stable_layer_norm else "encoder_frontend.layer_norm"
    for p in ("weight", "bias"):
        m[f"encoder.layer_norm.{p}"] = f"{top_ln}.{p}"
    for i in range(n_conv):
        src, dst = f"feature_extractor.conv_layers.{i}", f"encoder_frontend.feature_extractor.layers.{i}"
        for p in ("weight", "bias"):
            m[f"{src}.conv.{p}"] = f"{dst}.conv.{p}"
            if conv_norm == "layer":
                m[f"{src}.layer_norm.{p}"] = f"{dst}.layer_norm.{p}"
            elif i == 0:
                m[f"{src}.layer_norm.{p}"] = f"{dst}.group_norm.{p}"
    for i in range(n_layers):
        src, dst = f"encoder.layers.{i}", f"encoder.layers.{i}"
        for p in ("weight", "bias"):
            for a, b in (("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"), ("out_proj", "output_proj")):
                m[f"{src}.attention.{a}.{p}"] = f"{dst}.self_attn.{b}.{p}"
            m[f"{src}.layer_norm.{p}"] = f"{dst}.self_attn_layer_norm.{p}"
            m[f"{src}.final_layer_norm.{p}"] = f"{dst}.ffn_layer_norm.{p}"
            m[f"{src}.feed_forward.intermediate_dense.{p}"] = f"{dst}.ffn.inner_proj.{p}"
            m[f"{src}.feed_forward.output_dense.{p}"] = f"{dst}.ffn.output_proj.{p}"
    return m


def hf_config_to_fairseq2(cfg) -> dict:
    """Wav2Vec2EncoderConfig fields equivalent to a transformers Wav2Vec2Config/HubertConfig.

    Raises NotImplementedError for settings fairseq2's wav2vec2 encoder cannot express.
    """
    problems = []
    if getattr(cfg, "hidden_act", "gelu") != "gelu" or getattr(cfg, "feat_extract_activation", "gelu") != "gelu":
        problems.append("activations other than exact GELU")
    if abs(float(getattr(cfg, "layer_norm_eps", 1e-5)) - 1e-5) > 1e-12:
        problems.append(f"layer_norm_eps={cfg.layer_norm_eps} (fairseq2 uses 1e-5)")
    if not getattr(cfg, "feat_proj_layer_norm", True):
        problems.append("feat_proj_layer_norm=False (fairseq2 always normalises extracted features)")
    if cfg.conv_dim[-1] == cfg.hidden_size:
        problems.append("conv_dim[-1] == hidden_size (fairseq2 then drops the feature projection)")
    if getattr(cfg, "num_conv_pos_embedding_groups", 16) and getattr(cfg, "conv_pos_batch_norm", False):
        problems.append("conv_pos_batch_norm")
    if getattr(cfg, "add_adapter", False) or getattr(cfg, "use_weighted_layer_sum", False):
        problems.append("adapters / weighted layer sum")
    if getattr(cfg, "position_embeddings_type", None) not in (None, "conv"):
        problems.append(f"position_embeddings_type={cfg.position_embeddings_type}")
    if problems:
        raise NotImplementedError("cannot express in fairseq2's Wav2Vec2EncoderConfig: " + "; ".join(problems))
    stable = bool(cfg.do_stable_layer_norm)
    return {
        "model_dim": cfg.hidden_size,
        "max_seq_len": max(4096, int(getattr(cfg, "max_source_positions", 0) or 0)),
        "feature_dim": cfg.conv_dim[-1],
        "use_fbank": False,
        "layer_norm_features": not stable,
        "feature_extractor_layer_descs": [list(x) for x in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride)],
        "feature_extractor_bias": bool(cfg.conv_bias),
        "feature_extractor_layer_norm_convs": cfg.feat_extract_norm == "layer",
        "feature_grad_scale": 1.0,
        "pos_encoder_type": "conv",
        "pos_encoder_depth": 1,
        "pos_conv_kernel_size": cfg.num_conv_pos_embeddings,
        "num_pos_conv_groups": cfg.num_conv_pos_embedding_groups,
        "use_conformer": False,
        "num_encoder_layers": cfg.num_hidden_layers,
        "num_encoder_attn_heads": cfg.num_attention_heads,
        "ffn_inner_dim": cfg.intermediate_size,
        "norm_order": "PRE" if stable else "POST",
    }


def convert_hf_wav2vec2_to_fairseq2(hf_dir: str, out_dir: str) -> None:
    """Convert a transformers wav2vec2 (or HuBERT) checkpoint directory to the fairseq2 format.

    Writes ``fairseq2_wav2vec2.json`` and ``model.pt`` (see the module docstring) into
    ``out_dir``.  Every parameter of the fairseq2 encoder must be filled from the HF weights
    (checked); HF-only weights that inference does not use (``masked_spec_embed``, CTC
    head, quantizer) are dropped.
    """
    import transformers

    from ..io import atomic_path, write_json

    cfg = transformers.AutoConfig.from_pretrained(hf_dir, local_files_only=True)
    if cfg.model_type not in ("wav2vec2", "hubert"):
        raise ValueError(f"{hf_dir}: model_type {cfg.model_type!r}, expected wav2vec2 or hubert")
    fields = hf_config_to_fairseq2(cfg)
    cls = transformers.Wav2Vec2Model if cfg.model_type == "wav2vec2" else transformers.HubertModel
    hf = cls.from_pretrained(hf_dir, local_files_only=True)
    key_map = hf_to_fairseq2_key_map(cfg.num_hidden_layers, len(cfg.conv_dim), bool(cfg.do_stable_layer_norm),
                                     cfg.feat_extract_norm)
    out_sd, unmapped = {}, []
    for k, v in hf.state_dict().items():
        if k in key_map:
            out_sd[key_map[k]] = v.detach().clone().contiguous()
        elif not k.startswith("masked_spec_embed"):
            unmapped.append(k)
    if unmapped:
        raise NotImplementedError(f"{hf_dir}: no fairseq2 counterpart for {unmapped[:8]}")
    target = build_encoder_model(_encoder_config(fields)).state_dict()
    missing = sorted(set(target) - set(out_sd))
    extra = sorted(set(out_sd) - set(target))
    bad_shape = [k for k in out_sd if k in target and tuple(out_sd[k].shape) != tuple(target[k].shape)]
    if missing or extra or bad_shape:
        raise RuntimeError(f"conversion of {hf_dir} incomplete: missing {missing[:5]}, extra {extra[:5]}, "
                           f"shape mismatch {bad_shape[:5]}")
    do_norm = True
    pp = Path(hf_dir) / "preprocessor_config.json"
    if pp.is_file():
        do_norm = bool(json.loads(pp.read_text()).get("do_normalize", True))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS_FILE) as tmp:
        torch.save(out_sd, tmp)
    write_json(out / CONFIG_FILE, {"format": FORMAT, "encoder_config": fields, "do_normalize": do_norm,
                                   "source": f"converted from transformers {cls.__name__} at {os.path.abspath(hf_dir)}"})


def write_fairseq2_asset_card(fs2_dir: str, card_path: str, name: str = "emorepro_wav2vec2") -> None:
    """Turn a :func:`convert_hf_wav2vec2_to_fairseq2` directory into a fairseq2 asset card.

    fairseq2's hub loads a *full* ``Wav2Vec2Model`` checkpoint (with the pre-training
    quantizer and projections), so this writes ``<fs2_dir>/wav2vec2_full.pt`` with the
    converted encoder weights and freshly initialised pre-training modules (unused for
    feature extraction), and a card (``model_family: wav2vec2``, ``model_arch: base``,
    ``model_config`` overrides with the real encoder config, ``checkpoint: file://...``).
    ``load_encoder(EncoderSpec(..., backend="fairseq2", checkpoint=card_path))`` then goes
    through ``get_wav2vec2_model_hub().load_model(card)``.
    """
    import yaml
    from fairseq2.models.wav2vec2 import Wav2Vec2Config, create_wav2vec2_model

    from ..io import atomic_path, write_text

    _ensure_fairseq2_initialised()
    d = Path(fs2_dir)
    meta = json.loads((d / CONFIG_FILE).read_text())
    enc_fields = dict(meta["encoder_config"])
    extra = {"final_dim": min(256, enc_fields["model_dim"]), "quantized_dim": min(256, enc_fields["model_dim"])}
    full = create_wav2vec2_model(Wav2Vec2Config(encoder_config=_encoder_config(enc_fields), **extra))
    sd = full.state_dict()
    enc_sd = torch.load(d / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    unknown = sorted(set(enc_sd) - set(sd))
    if unknown:
        raise RuntimeError(f"{d / WEIGHTS_FILE}: keys not in fairseq2 Wav2Vec2Model: {unknown[:5]}")
    sd.update(enc_sd)
    with atomic_path(d / "wav2vec2_full.pt") as tmp:
        torch.save({"model": sd}, tmp)
    card = {"name": name, "model_family": "wav2vec2", "model_arch": "base",
            "model_config": {"encoder_config": enc_fields, **extra},
            "checkpoint": (d / "wav2vec2_full.pt").resolve().as_uri(),
            "do_normalize": bool(meta.get("do_normalize", True))}
    write_text(card_path, yaml.safe_dump(card, sort_keys=False))
