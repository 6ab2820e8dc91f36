"""DP-SGD through Opacus: the model learns, the RMSNorm weights stay frozen, and more noise buys a smaller epsilon."""

from __future__ import annotations

import math

import torch

from alignlab.attacks.privacy.dp import DPConfig, train_dp


def _run(noise: float):
    from alignlab.core.models import tiny_llama

    model = tiny_llama(64, hidden_size=32, layers=1, heads=2, seed=0, pad_token_id=0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    examples = [{"input_ids": [1, 5 + i % 7, 9, 3, 4, 2], "labels": [1, 5 + i % 7, 9, 3, 4, 2]} for i in range(64)]
    facts = train_dp(model, examples, 0, DPConfig(noise_multiplier=noise), epochs=1, batch_size=16, lr=1e-2)
    return model, before, facts


def test_dp_sgd_trains_and_accounts():
    model, before, facts = _run(0.5)
    assert facts["steps"] >= 3 and math.isfinite(facts["final_loss"]) and 0 < facts["epsilon"] < math.inf
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "lm_head.weight" in changed and "model.embed_tokens.weight" in changed
    assert not any("norm" in n for n in changed)  # frozen: Opacus has no per-example rule for RMSNorm
    assert _run(2.0)[2]["epsilon"] < facts["epsilon"]
