"""Ispas et al. (2023) heads at real size (issue 5): parameter count and CPU forward+backward time.

    PYTHONPATH=src python benchmarks/ispas_model.py                  # all Table 2 architectures, 2 threads
    PYTHONPATH=src python benchmarks/ispas_model.py --reps 5 --threads 1 --json out.json

Real size: d_audio = d_text = d_model = 1024 (HuBERT-large, DeBERTaV3-large), 32 heads, L = 30
bridge tokens, 4 classes, heads with ``d_head`` hidden units (IspasConfig defaults).  Encoders
are *not* included (frozen-cache mode): HuBERT-large has ~316 M and DeBERTaV3-large ~435 M
parameters on top.

The count is checked against a hand count of the architecture:

    MHA(d)          = 4 d^2 + 4 d          (in_proj W_Q,W_K,W_V + biases; out_proj W^O + bias)
    S/A, per modality = MHA(d) + LayerNorm  = 4 d^2 + 6 d
    CR/A            = 2 MHA(d)
    Q               = 2 L d
    projection      = 0 when d_in == d_model (identity), else d_in d + d
    heads           = (d_f h + h + h C + C) + (d_f h + h + 2 h + 2),  d_f = d (CR/A) or 2d (concat)

Timing: one training step (forward, the full multi-task loss, backward) on a batch of 16 with
7 s of audio (350 HuBERT frames) and 40 text tokens, padded to N = 350 as the paper does;
``--reps`` timed steps after one warm-up, median reported.  Figures depend on the machine and
on whatever else runs on it.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

ARCHS = {   # Table 2's architectures (the Disc/Con switches change the loss, not the parameters)
    "baseline": dict(sa=False, cra=False, q=False),
    "S/A": dict(sa=True, cra=False, q=False),
    "S/A+CR/A": dict(sa=True, cra=True, q=False),
    "S/A+CR/A+Q": dict(sa=True, cra=True, q=True),
}


def hand_count(d_audio: int, d_text: int, d: int, L: int, d_head: int, C: int, sa: bool, cra: bool, q: bool) -> int:
    mha = 4 * d * d + 4 * d
    n = sum(0 if d_in == d else d_in * d + d for d_in in (d_audio, d_text))
    n += 2 * (mha + 2 * d) if sa else 0
    n += 2 * mha if cra else 0
    n += 2 * L * d if q else 0
    d_f = d if cra else 2 * d
    if d_head > 0:
        n += (d_f * d_head + d_head + d_head * C + C) + (d_f * d_head + d_head + d_head * 2 + 2)
    else:
        n += (d_f * C + C) + (d_f * 2 + 2)
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--audio-frames", type=int, default=350, help="7 s of HuBERT frames (50/s)")
    ap.add_argument("--text-tokens", type=int, default=40)
    ap.add_argument("--archs", nargs="*", default=list(ARCHS), choices=list(ARCHS))
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    import torch

    from emorepro.models.ispas_mm import IspasConfig, IspasMM, ispas_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, Ta, Tt = args.batch, args.audio_frames, args.text_tokens
    audio = torch.randn(B, Ta, 1024)
    text = torch.randn(B, Tt, 1024)
    # realistic variation: lengths spread down to half the maximum
    la = torch.linspace(Ta // 2, Ta, B).long()
    lt = torch.linspace(Tt // 2, Tt, B).long()
    am = torch.arange(Ta)[None] < la[:, None]
    tm = torch.arange(Tt)[None] < lt[:, None]
    batch = {"label": torch.randint(0, 4, (B,)), "valence": torch.rand(B), "arousal": torch.rand(B)}

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {B}, audio {Ta} frames, "
          f"text {Tt} tokens (padded to N = {max(Ta, Tt)})")
    print(f"{'architecture':<14}{'params':>12}{'hand count':>12}{'fwd+bwd s (median)':>22}{'forward s':>12}")
    out = {"threads": torch.get_num_threads(), "batch": B, "audio_frames": Ta, "text_tokens": Tt, "archs": {}}
    for name in args.archs:
        cfg = IspasConfig(d_audio=1024, d_text=1024, rmm=False, **ARCHS[name])
        net = IspasMM(cfg).train()
        n = sum(p.numel() for p in net.parameters())
        hc = hand_count(1024, 1024, cfg.d_model, cfg.n_bridge, cfg.d_head, cfg.n_classes, cfg.sa, cfg.cra, cfg.q)
        assert n == hc, f"{name}: module count {n} != hand count {hc}"
        steps, fwds = [], []
        for i in range(args.reps + 1):
            net.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            res = net(audio, am, text, tm)
            t1 = time.perf_counter()
            ispas_loss(res, batch, cfg)[0].backward()
            t2 = time.perf_counter()
            if i:   # the first step warms up the allocator and kernels
                steps.append(t2 - t0)
                fwds.append(t1 - t0)
        med, fmed = statistics.median(steps), statistics.median(fwds)
        print(f"{name:<14}{n:>12,}{hc:>12,}{med:>22.3f}{fmed:>12.3f}")
        out["archs"][name] = {"params": n, "hand_count": hc, "fwd_bwd_s": steps, "fwd_bwd_median_s": med,
                              "forward_median_s": fmed}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
