"""Zhang et al. (2022) network: Eq. 1's per-head projections, the BiLSTM depth, sizes of Table 2."""
from __future__ import annotations

import pytest
import torch

from emorepro.models import build_model
from emorepro.models.zhang_bilstm import StructuredSelfAttention, ZhangConfig


def test_per_head_attention_is_eq_1_head_by_head():
    """alpha_i = softmax_T(w2_i tanh(W1_i H^T)), H_att = concat_i(alpha_i H), checked one head at a time."""
    torch.manual_seed(0)
    d_in, d_att, n_heads = 6, 5, 3
    att = StructuredSelfAttention(d_in, d_att, n_heads, per_head=True)
    h = torch.randn(2, 7, d_in)                                          # (B, T, D)
    got = att(h)
    want = []
    for i in range(n_heads):
        w1_i = att.w1.weight[i * d_att:(i + 1) * d_att]                  # (d_att, D): head i's own W1
        scores = torch.tanh(h @ w1_i.T) @ att.w2[i]                      # (B, T)
        alpha = torch.softmax(scores, dim=1)
        want.append(torch.einsum("bt,btd->bd", alpha, h))
    assert torch.allclose(got, torch.cat(want, dim=1), atol=1e-6)
    # The heads really have separate projections: changing head 0's W1 leaves heads 1..n unchanged.
    with torch.no_grad():
        att.w1.weight[:d_att] += 1.0
    moved = att(h)
    assert not torch.allclose(moved[:, :d_in], got[:, :d_in]) and torch.allclose(moved[:, d_in:], got[:, d_in:])


def test_shared_attention_is_lin_et_al_one_w1_for_all_heads():
    torch.manual_seed(0)
    att = StructuredSelfAttention(6, 5, 3, per_head=False)
    h = torch.randn(2, 7, 6)
    alpha = torch.softmax(att.w2(torch.tanh(att.w1(h))), dim=1)         # (B, T, heads)
    assert torch.allclose(att(h), torch.einsum("bth,btd->bhd", alpha, h).flatten(1), atol=1e-6)
    with pytest.raises(ValueError, match="att_w1"):
        ZhangConfig(att_w1="per-head")


def test_paper_sizes_two_bilstm_layers_and_their_parameter_count():
    with torch.device("meta"):
        net, cfg = build_model("zhang_bilstm_att", {})
    assert (cfg.n_lstm_layers, cfg.att_w1, cfg.d_lstm, cfg.d_att, cfg.n_heads) == (2, "per_head", 256, 512, 8)
    assert net.lstm.num_layers == 2 and net.lstm.bidirectional and net.lstm.dropout == 0.2 and net.drop.p == 0.2

    def lstm(d_in, d):   # one direction: 4 gates x (input + recurrent weights + two biases)
        return 4 * d * (d_in + d + 2)
    n_lstm = 2 * lstm(40, 256) + 2 * lstm(512, 256)
    n_att = 512 * 8 * 512 + 8 * 512
    n_fc = (8 * 512 * 4096 + 4096) + (4096 * 1024 + 1024) + (1024 * 4 + 4)
    assert sum(p.numel() for p in net.parameters()) == n_lstm + n_att + n_fc
    one = build_model("zhang_bilstm_att", {"n_lstm_layers": 1, "d_lstm": 8, "d_att": 4, "n_heads": 2,
                                           "d_fc1": 8, "d_fc2": 8})[0]
    assert one.lstm.num_layers == 1 and one.lstm.dropout == 0.0
    out = one(torch.randn(3, 11, 40))
    assert out["logits"].shape == (3, 4)


def test_zhang_experiments_share_no_config_dict():
    """Snakemake merges a --configfile into the config in place, so a dict that YAML aliases between two
    experiments would take one experiment's override into the other (tests/config/e2e.yaml overrides
    baseline_act's epochs only).  The Zhang experiments merge their shared settings instead."""
    import yaml

    from tests.workflow_utils import REPO

    exps = yaml.safe_load((REPO / "config/config.yaml").read_text())["experiments"]["zhang2022"]
    seen: dict[int, str] = {}

    def walk(obj, where):
        if isinstance(obj, dict):
            assert id(obj) not in seen, f"{where} is the same object as {seen[id(obj)]}"
            seen[id(obj)] = where
            for k, v in obj.items():
                walk(v, f"{where}.{k}")

    for name, e in exps.items():
        for k, v in e.items():
            walk(v, f"{name}.{k}")
    assert exps["baseline_act"]["model_params"] == {"n_lstm_layers": 2, "att_w1": "per_head"}
    assert all(e["model_params"] == exps["baseline_act"]["model_params"] for e in exps.values())
