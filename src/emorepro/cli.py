"""The ``emorepro`` command line: the same steps as the Snakemake rules, for use by hand.

Each subcommand imports only what it needs, so ``emorepro --help`` is instant.
Bad input exits with status 2 and a one-line message naming the file and line or the
config key; no partial output is left behind (every write is atomic).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


def _corpus_synth(a):
    if a.kind == "jtes":
        from .steps import synth_jtes_corpus

        synth_jtes_corpus(a.outdir, {"seed": a.seed, "speakers_per_session": a.speakers_per_session,
                                     "sentences_per_emotion": a.sentences_per_emotion})
        return
    from .steps import synth_corpus

    synth_corpus(a.outdir, {"seed": a.seed, "turns_per_dialog": a.turns_per_dialog})


# Default label maps per format (config corpora.<name>.label_map / drop_labels).
_LABELS = {
    "iemocap": ({"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}, ["fru", "sur", "fea", "dis", "oth", "xxx"]),
    "jtes": ({"ang": "ang", "joy": "hap", "neu": "neu", "sad": "sad"}, []),
}


def _corpus_ingest(a):
    from .steps import ingest

    default_map, default_drop = _LABELS.get(a.format, _LABELS["iemocap"])
    label_map = json.loads(a.label_map) if a.label_map else default_map
    drop = a.drop_labels.split(",") if a.drop_labels else default_drop
    expected = json.loads(a.expected_counts) if a.expected_counts else None
    sessions = json.loads(a.sessions) if a.sessions and a.sessions.lstrip().startswith("{") else a.sessions
    ingest(a.root, a.output, fmt={"iemocap": "iemocap", "jtes": "jtes", "csv": "generic_csv"}[a.format],
           label_map=label_map, drop_labels=drop, sample_rate=a.sample_rate, expected_counts=expected,
           sessions=sessions, sentences=a.sentences, encoding=a.encoding)


def _folds(a):
    from .steps import make_folds

    make_folds(a.manifest, a.output, scheme=a.scheme, val_policy=a.val_policy, seed=a.seed, n_folds=a.n_folds)


def _features_repair(a):
    from .steps import repair_features

    r = repair_features(a.cache_dir, device=a.device)
    print(f"{a.cache_dir}: re-extracted shard(s) {r['recomputed_shards'] or 'none'}; "
          + ("byte-identical to the recorded ones: every result built on this cache stays valid" if r["identical"]
             else "they differ from the recorded ones: the cache's sidecar is rewritten, and the results built on "
                  "the old shards no longer verify (re-run the workflow to rebuild them)"))


def _fusion_search(a):
    from .fusion import search_npz
    from .io import InputError

    ks = None if a.all_k else a.k
    try:
        doc = search_npz(a.npz, ks, a.output, max_seconds=a.max_hours * 3600, progress=a.progress)
    except OSError as e:  # the output cannot be written
        raise InputError(f"{a.output}: cannot write ({e.strerror or e})") from None
    if not doc["utt_ids_checked"]:
        print(f"emorepro: warning: {a.npz} has no utt_ids array: the trials' utterance order is not checked",
              file=sys.stderr)


def _verify(a):
    from .provenance import verify_tree

    n, problems = verify_tree(a.root)
    for line in problems:
        print(line)
    if n == 0:
        print(f"no provenance sidecars under {a.root}: nothing to verify (is it the results folder?)")
        return 1
    print(f"checked {n} provenance sidecars under {a.root}: " + (f"{len(problems)} problem(s)" if problems else "all ok"))
    return 1 if problems or n == 0 else 0


def _trace(a):
    from .provenance import trace_cell

    lines, ok = trace_cell(a.table, a.row, a.col, max_raw=a.max_raw)
    print("\n".join(lines))
    return 0 if ok else 1


def _trace_utt(a):
    from .augment.trace import trace_utterance

    lines, ok = trace_utterance(a.manifest, a.utt_id)
    print("\n".join(lines))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="emorepro", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    corpus = sub.add_parser("corpus", help="generate or ingest a corpus").add_subparsers(dest="corpus_cmd", required=True)
    s = corpus.add_parser("synth", help="write a synthetic demo corpus in a release layout (IEMOCAP or JTES)")
    s.add_argument("kind", choices=["iemocap", "jtes"])
    s.add_argument("outdir", help="IEMOCAP_full_release or jtes_v1.1 folder to write")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--turns-per-dialog", type=int, default=24, help="iemocap: utterances per dialog")
    s.add_argument("--speakers-per-session", type=int, default=2, help="jtes: women and men per session (release: 10)")
    s.add_argument("--sentences-per-emotion", type=int, default=6, help="jtes: sentences per emotion (release: 50)")
    s.set_defaults(func=_corpus_synth)
    s = corpus.add_parser("ingest", help="parse a corpus into a manifest CSV")
    s.add_argument("format", choices=["iemocap", "jtes", "csv"])
    s.add_argument("root", help="IEMOCAP_full_release or jtes_v1.1 directory, or the generic CSV manifest")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--label-map", help='JSON; default iemocap {"neu":"neu","hap":"hap","exc":"hap","ang":"ang","sad":"sad"}, '
                                       'jtes {"ang":"ang","joy":"hap","neu":"neu","sad":"sad"}')
    s.add_argument("--drop-labels", help="comma-separated known labels to drop (default iemocap fru,sur,fea,dis,oth,xxx; jtes none)")
    s.add_argument("--expected-counts", help="JSON of breakdowns to check, e.g. '{\"total\": 5531}'")
    s.add_argument("--sample-rate", type=int, default=16000)
    s.add_argument("--sessions", default="consecutive",
                   help="jtes: consecutive (session k = f/m ids 10k-9..10k) or JSON {\"1\": [\"f01\", ...], ...}")
    s.add_argument("--sentences", help="jtes: sentence list TSV (<emo>_<NN><TAB>text), relative to ROOT or absolute")
    s.add_argument("--encoding", default="utf-8", help="text encoding of the transcripts / CSV (decoded strictly)")
    s.set_defaults(func=_corpus_ingest)

    s = sub.add_parser("folds", help="write a fold file (utt_id, fold, split)")
    s.add_argument("manifest")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--scheme", choices=["loso5", "lospk10", "random5"], default="loso5")
    s.add_argument("--val-policy", default="none")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-folds", type=int, help="the number of folds the data must give (an error otherwise)")
    s.set_defaults(func=_folds)

    from .fusion.budget import DEFAULT_MAX_HOURS  # no numba: the package loads its modules on use
    features = sub.add_parser("features", help="feature caches").add_subparsers(dest="features_cmd", required=True)
    s = features.add_parser("repair", help="re-extract the damaged or missing shards of a feature cache")
    s.add_argument("cache_dir", help="results/<corpus>/features/<encoder>")
    s.add_argument("--device", default=None, help="cpu or cuda (default: a GPU when there is one)")
    s.set_defaults(func=_features_repair)

    fusion = sub.add_parser("fusion", help="late-fusion subset search").add_subparsers(dest="fusion_cmd", required=True)
    s = fusion.add_parser("search", help="exact best subset of trials for each k")
    s.add_argument("--npz", required=True, help="file with logits (n_trials, n_utts, n_classes) and labels (n_utts,); "
                   "optionally utt_ids (n_trials, n_utts), each trial's utterance order, which is then checked")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--k", type=int, nargs="+")
    g.add_argument("--all-k", action="store_true")
    s.add_argument("-o", "--output", required=True)
    s.add_argument("--max-hours", type=float, default=DEFAULT_MAX_HOURS,
                   help="refuse, before searching, sizes whose estimated time exceeds this many hours (default %(default)s)")
    s.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: for searches estimated over 30 s)")
    s.set_defaults(func=_fusion_search)

    s = sub.add_parser("verify", help="re-hash every provenance sidecar under a tree")
    s.add_argument("root", nargs="?", default="results")
    s.set_defaults(func=_verify)
    s = sub.add_parser("trace", help="walk one table cell down to the raw corpus files")
    s.add_argument("table", help="results/tables/<table>.tex")
    s.add_argument("--row", required=True)
    s.add_argument("--col", required=True)
    s.add_argument("--max-raw", type=int, default=5, help="raw corpus files printed per input (all are verified)")
    s.set_defaults(func=_trace)
    s = sub.add_parser("trace-utt", help="one utterance's manifest row and wav; an augmented copy back to its source")
    s.add_argument("manifest", help="results/<corpus>/manifest.csv")
    s.add_argument("utt_id", help="e.g. Ses01F_impro01_F000__aug2")
    s.set_defaults(func=_trace_utt)

    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    from .io import InputError

    try:
        rc = a.func(a)
    except InputError as e:
        print(f"emorepro: error: {e}", file=sys.stderr)
        return 2
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
