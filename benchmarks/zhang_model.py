"""Zhang et al.'s network at real size: parameters, FLOPs and CPU time of one training step.

    PYTHONPATH=src python benchmarks/zhang_model.py            # the real config's network and the alternatives

One step = forward + backward + Adam on a batch of 32 x 750 frames x 40 mel (7.5 s at 100
frames/s), for the settings of config/config.yaml (two BiLSTM layers, a W1 per head) and
the alternatives (one layer; one W1 shared by the heads).  torch's FLOP counter does not see
the LSTM, so its FLOPs are counted here: per direction, layer and frame, 4 gates x
2 x d_lstm x (d_in + d_lstm) multiply-adds forward, twice that backward.  CPU times depend on
the machine and on whatever else runs on it; the script prints torch's thread count.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def lstm_flops(cfg, batch: int, frames: int) -> float:
    total, d_in = 0.0, cfg.n_mels
    for _ in range(cfg.n_lstm_layers):
        fwd = 2 * batch * frames * 2 * 4 * cfg.d_lstm * (d_in + cfg.d_lstm)   # 2 directions, 2 FLOPs per MAC
        total += 3 * fwd
        d_in = 2 * cfg.d_lstm
    return total


def measure(params: dict, batch: int, frames: int, repeats: int) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from emorepro.models import build_model

    torch.manual_seed(0)
    net, cfg = build_model("zhang_bilstm_att", params)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x, y = torch.randn(batch, frames, cfg.n_mels), torch.randint(0, 4, (batch,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x)["logits"], y).backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return {"params_m": sum(p.numel() for p in net.parameters()) / 1e6, "lstm_gflop": lstm_flops(cfg, batch, frames) / 1e9,
            "other_gflop": fc.get_total_flops() / 1e9, "best_s": min(times)}


def main(argv=None) -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--frames", type=int, default=750)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x {args.frames} frames")
    print("| setting | parameters (M) | GFLOP per step: LSTM + attention/FC = total | CPU s per step (best of "
          f"{args.repeats}) |\n|---|---|---|---|")
    for name, params in (("2 layers, W1 per head (config)", {}), ("1 layer, W1 per head", {"n_lstm_layers": 1}),
                         ("2 layers, shared W1", {"att_w1": "shared"}),
                         ("1 layer, shared W1", {"n_lstm_layers": 1, "att_w1": "shared"})):
        r = measure(params, args.batch, args.frames, args.repeats)
        print(f"| {name} | {r['params_m']:.1f} | {r['lstm_gflop']:.0f} + {r['other_gflop']:.0f} = "
              f"{r['lstm_gflop'] + r['other_gflop']:.0f} | {r['best_s']:.1f} |")


if __name__ == "__main__":
    main()
