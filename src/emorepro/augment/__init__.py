"""MMER's augmentation stage (Ghosh et al. 2022, Sec. 3.3): back-translation + zero-shot TTS, as corpus steps.

The paper back-translates each transcript and speaks the new text with a speaker-conditioned
TTS (YourTTS) in the voice of a *different* training speaker "expressing a similar emotion";
the pairs feed the augmentation contrastive loss (ACL).  Here this is a stage of the pipeline,
not a training-time trick: two rules turn a corpus manifest into an augmented corpus in the
generic CSV format (:mod:`emorepro.corpus.generic`), which is then ingested and encoded by the
feature cache like any corpus, so nothing is encoded twice and every copy is auditable.

* :mod:`.copies` (torch-free): which copies exist and which a fold may train on.
  K copies per labelled utterance, one per *other* session, each voiced by a (seeded) speaker
  of that session; in fold k a training utterance may use only the copies that are not voiced by
  a speaker held out of fold k's training (test or validation) and not derived from a held-out
  utterance (:func:`allowed_copies`); :func:`choose_copies` draws one per utterance and epoch.
  One augmentation run serves every fold.
* :mod:`.backtranslate`: ``nllb`` (NLLB-200 en -> fr -> en, sampled, seeded), ``paraphrase``
  (offline rewording that keeps the emotion words; *not* back-translation) or ``none``.
* :mod:`.tts`: ``yourtts`` (coqui-tts YourTTS, d-vector = mean speaker-encoder embedding of the
  target speaker's utterances with the source's label) or ``espeak`` (the target speaker's
  espeak-ng voice with the label's prosody).
* :mod:`.pipeline`: the two steps (``back_translate``, ``synthesize``) the rules call.
* :mod:`.demo`: tiny random-initialised NLLB (M2M100) and YourTTS (VITS + H/ASP speaker
  encoder) checkpoints in the real layouts, so the real backends' code runs here.

Outputs of an augmented corpus ``<aug>`` (config ``corpora.<aug>.augment``)::

    results/<aug>/back_translation/texts.csv   one row per copy: plan + back-translated text
    results/<aug>/tts/corpus.csv               the generic-CSV corpus (utt_id = <source>__aug<j>)
    results/<aug>/tts/copies.csv               sidecar: every copy -> its source, speakers, texts
    results/<aug>/tts/wav/<utt_id>.wav          16 kHz PCM
"""
from .copies import (
    COPY_SEP,
    allowed_copies,
    aug_id,
    choose_copies,
    read_copies,
    source_of,
)

__all__ = ["COPY_SEP", "allowed_copies", "aug_id", "choose_copies", "read_copies", "source_of"]
