"""Back-translation backends for MMER's augmentation: ``nllb``, ``paraphrase`` or ``none``.

* ``nllb`` (the authors' choice, named by a maintainer in the authors' repository, issue #11):
  NLLB-200 (``facebook/nllb-200-distilled-600M``) from a local checkpoint directory, read with
  transformers' ``M2M100ForConditionalGeneration`` + ``NllbTokenizerFast``.  English -> French
  -> English, sampled in both directions (``do_sample``, ``top_p`` 0.9, temperature 1.0, 5
  returns each; the sampling parameters are unstated, so these are our choice).  Of the 5 French
  returns the first non-empty one is kept; of the 5 English returns, the first that differs from
  the source after normalisation (lower case, letters and digits only), else the first.  Texts
  go through the model in batches of ``batch_size`` in a fixed order, each batch seeded from
  (seed, batch index, direction): same seed and batch size -> same text.
* ``paraphrase`` (the offline default; **not back-translation**): a deterministic rewording.
  Known phrases (the synthetic corpus's :data:`emorepro.corpus.synth.PARAPHRASES`, which keep
  their emotion words) are replaced by a seeded choice among their paraphrases; a sentence with
  none of them gets light rule-based rewriting (contractions both ways, a small table of
  emotion-neutral synonyms).  Written here because no offline paraphraser ships with weights.
* ``none``: the copy keeps the source text.

Every backend sees the cleaned transcript (:func:`emorepro.augment.copies.clean_text`).
"""
from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..io import InputError
from .copies import seeded_rng

log = logging.getLogger(__name__)

BACKENDS = ("nllb", "paraphrase", "none")
LABELS = {"nllb": "back-translation (NLLB-200, en-fr-en)",
          "paraphrase": "paraphrase (rule-based rewording; not back-translation)",
          "none": "none (the source text)"}


@dataclass
class BackTranslationConfig:
    """Config ``corpora.<aug>.augment.back_translation`` (defaults as config/schema.yaml)."""

    backend: str = "paraphrase"
    checkpoint: str | None = None        # nllb: local NLLB-200 directory (config.json, tokenizer.json, weights)
    src_lang: str = "eng_Latn"
    pivot_lang: str = "fra_Latn"
    num_return_sequences: int = 5
    top_p: float = 0.9
    temperature: float = 1.0
    batch_size: int = 16
    max_new_tokens: int = 200            # NLLB-200's generation max_length
    per_copy: bool = False               # one text per source (the authors' AugmentedText) or one per copy
    device: str | None = None            # nllb: cuda if available, else cpu
    demo: dict | None = None             # tiny random-init checkpoint built by the pipeline (config only)

    @classmethod
    def from_dict(cls, d: dict, key: str = "back_translation") -> BackTranslationConfig:
        return config_from_dict(cls, d, key, BACKENDS)


def config_from_dict(cls, d: dict, key: str, backends: Sequence[str]):
    """A backend config dataclass from its config block; unknown keys and backends name ``key``."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise InputError(f"config: {key}: unknown key(s) {unknown}; known: {sorted(names)}")
    cfg = cls(**d)
    if cfg.backend not in backends:
        raise InputError(f"config: {key}.backend: {cfg.backend!r} is not one of {list(backends)}")
    return cfg


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


# --------------------------------------------------------------------------- paraphrase

# (a, b): a is rewritten as b and b as a (the first pair listed wins for a reverse form).
_REWRITES = [
    ("I am", "I'm"), ("do not", "don't"), ("does not", "doesn't"), ("did not", "didn't"), ("can not", "can't"),
    ("cannot", "can't"), ("will not", "won't"), ("is not", "isn't"), ("are not", "aren't"), ("was not", "wasn't"),
    ("it is", "it's"), ("that is", "that's"), ("what is", "what's"), ("you are", "you're"), ("we are", "we're"),
    ("they are", "they're"), ("I will", "I'll"), ("I have", "I've"), ("let us", "let's"), ("there is", "there's"),
    # emotion-neutral synonyms
    ("maybe", "perhaps"), ("okay", "all right"), ("yeah", "yes"), ("begin", "start"), ("anyway", "anyhow"),
    ("talk", "speak"), ("quick", "fast"),
]


def _alternation(keys) -> re.Pattern:
    # Longest first, so that a phrase wins over a filler inside it ("stop it right now" vs "right now").
    alts = "|".join(re.escape(k) for k in sorted(keys, key=lambda k: (-len(k), k)))
    return re.compile(rf"(?<![\w'])(?:{alts})(?![\w'])", re.IGNORECASE)


def _match_case(src: str, new: str) -> str:
    return new[:1].upper() + new[1:] if src[:1].isupper() else new


class Paraphraser:
    """Seeded rewording: table phrases first, rule-based rewriting for sentences without any."""

    def __init__(self, table: dict[str, list[str]] | None = None):
        if table is None:
            from ..corpus.synth import PARAPHRASES as table
        self.table = {k.lower(): list(v) for k, v in table.items()}
        self.table_re = _alternation(self.table)
        rules: dict[str, str] = {}
        for a, b in _REWRITES:
            rules.setdefault(a.lower(), b)
            rules.setdefault(b.lower(), a)
        self.rules = rules
        self.rules_re = _alternation(rules)

    def __call__(self, text: str, rng) -> str:
        if self.table_re.search(text):
            return self.table_re.sub(lambda m: _match_case(m[0], self.table[m[0].lower()][
                int(rng.integers(len(self.table[m[0].lower()])))]), text)
        matches = list(self.rules_re.finditer(text))
        if not matches:
            return text
        # Rewrite each match with probability 1/2, at least one: several variants per sentence.
        flip = rng.random(len(matches)) < 0.5
        if not flip.any():
            flip[int(rng.integers(len(matches)))] = True
        out, pos = [], 0
        for m, f in zip(matches, flip):
            out += [text[pos:m.start()], _match_case(m[0], self.rules[m[0].lower()]) if f else m[0]]
            pos = m.end()
        return "".join(out + [text[pos:]])


# --------------------------------------------------------------------------- nllb

def _check_hf_dir(checkpoint: str | None, key: str, what: str) -> Path:
    if not checkpoint:
        raise InputError(f"config: {key}.checkpoint: required for the {what} backend (a local checkpoint directory)")
    d = Path(checkpoint)
    if not d.is_dir():
        raise InputError(f"{d}: {what} checkpoint directory does not exist (config: {key}.checkpoint)")
    for name in ("config.json", "tokenizer.json"):
        if not (d / name).is_file():
            raise InputError(f"{d / name}: missing from the {what} checkpoint (config: {key}.checkpoint)")
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
    if not any((d / w).is_file() for w in weights):
        raise InputError(f"{d / weights[0]}: missing from the {what} checkpoint (no weights: expected one of "
                         f"{list(weights)}; config: {key}.checkpoint)")
    return d


class NllbBackTranslator:
    """NLLB-200 (M2M100 architecture) English -> pivot -> English, sampled and seeded."""

    def __init__(self, cfg: BackTranslationConfig, key: str = "back_translation"):
        d = _check_hf_dir(cfg.checkpoint, key, "nllb")
        import torch
        from transformers import M2M100ForConditionalGeneration, NllbTokenizerFast

        self.cfg = cfg
        self.device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tok = NllbTokenizerFast.from_pretrained(d, src_lang=cfg.src_lang)
        for lang, k in ((cfg.src_lang, "src_lang"), (cfg.pivot_lang, "pivot_lang")):
            if self.tok.convert_tokens_to_ids(lang) in (None, self.tok.unk_token_id):
                raise InputError(f"{d / 'tokenizer.json'}: no language code {lang!r} (config: {key}.{k})")
        self.model = M2M100ForConditionalGeneration.from_pretrained(d).eval().to(self.device)

    def _generate(self, texts: list[str], src: str, tgt: str, seed: int) -> list[list[str]]:
        import torch

        n = self.cfg.num_return_sequences
        self.tok.src_lang = src
        enc = self.tok(texts, return_tensors="pt", padding=True, truncation=True,
                       max_length=self.tok.model_max_length if self.tok.model_max_length < 10**6 else 1024)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        # A sampled translation is rarely longer than 3x its source; the cap stops a runaway sample early.
        max_new = min(self.cfg.max_new_tokens, 3 * enc["input_ids"].shape[1] + 10)
        torch.manual_seed(seed)
        with torch.inference_mode():
            out = self.model.generate(**enc, forced_bos_token_id=self.tok.convert_tokens_to_ids(tgt), do_sample=True,
                                      top_p=self.cfg.top_p, temperature=self.cfg.temperature, num_return_sequences=n,
                                      max_new_tokens=max_new)
        dec = [" ".join(t.split()) for t in self.tok.batch_decode(out, skip_special_tokens=True)]
        return [dec[i * n:(i + 1) * n] for i in range(len(texts))]

    def __call__(self, texts: Sequence[str], seed: int, progress: bool = True) -> list[str]:
        from tqdm.auto import tqdm

        out = list(texts)
        todo = [i for i, t in enumerate(texts) if t]
        bs = max(1, self.cfg.batch_size)
        batches = [todo[i:i + bs] for i in range(0, len(todo), bs)]
        for b, idx in enumerate(tqdm(batches, desc="back-translation (nllb)", unit="batch", disable=not progress,
                                     mininterval=5)):
            src = [texts[i] for i in idx]
            s_fwd, s_back = (int(seeded_rng(seed, "nllb", str(b), d).integers(2**31)) for d in ("fwd", "back"))
            pivots = [next((p for p in ps if p), ps[0]) for ps in
                      self._generate(src, self.cfg.src_lang, self.cfg.pivot_lang, s_fwd)]
            backs = self._generate(pivots, self.cfg.pivot_lang, self.cfg.src_lang, s_back)
            for i, s, cands in zip(idx, src, backs):
                out[i] = next((c for c in cands if c and _norm(c) != _norm(s)), cands[0])
        return out


# --------------------------------------------------------------------------- entry point

def back_translate(texts: Sequence[str], keys: Sequence[str], cfg: BackTranslationConfig, *, seed: int,
                   progress: bool = True, key: str = "back_translation") -> tuple[list[str], dict]:
    """The augmented text of each of ``texts`` (``keys`` seed the per-text choices of ``paraphrase``).

    Returns the texts and a summary for provenance (backend, label, how many differ from their source).
    """
    if len(texts) != len(keys):
        raise ValueError("back_translate: texts and keys differ in length")
    if cfg.backend == "none":
        out = list(texts)
    elif cfg.backend == "paraphrase":
        para = Paraphraser()
        out = [para(t, seeded_rng(seed, "paraphrase", k)) for t, k in zip(texts, keys)]
    else:
        out = NllbBackTranslator(cfg, key)(list(texts), seed, progress=progress)
    changed = sum(_norm(a) != _norm(b) for a, b in zip(texts, out))
    info = {"backend": cfg.backend, "label": LABELS[cfg.backend], "n_texts": len(out), "n_changed": int(changed)}
    log.info("back-translation %s: %d of %d texts changed", cfg.backend, changed, len(out))
    return out, info
