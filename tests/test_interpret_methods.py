"""Patching, attribution patching, ablation, logit lens and head scores on tiny random models (what the
TransformerLens parity tests do not cover)."""

from __future__ import annotations

import pytest
import torch
from test_interpret_hooks import tiny

from alignlab.errors import InterpretError
from alignlab.interpret.heads import head_scores, induction_pattern, repeated_tokens, score_patterns
from alignlab.interpret.hooks import hooks, run_with_cache
from alignlab.interpret.lens import logit_lens
from alignlab.interpret.patching import (
    ablation_hook,
    attribution_patching,
    correlation,
    logit_difference,
    patch_by_head,
    patch_by_position,
)

pytestmark = pytest.mark.xdist_group("interpret")


def pair(changed: int = 3):
    generator = torch.Generator().manual_seed(1)
    clean = torch.randint(3, 64, (4, 7), generator=generator)
    corrupted = clean.clone()
    corrupted[:, changed] = torch.randint(3, 64, (4,), generator=generator)
    return clean, corrupted, logit_difference(torch.tensor([4, 5, 6, 7]), torch.tensor([8, 9, 10, 11]))


@pytest.mark.parametrize("family", ["gpt2", "phi3"])
def test_patching_recovers_clean_and_attribution_tracks_it(family):
    model = tiny(family)
    clean, corrupted, metric = pair()
    with torch.no_grad():
        clean_metric, corrupted_metric = metric(model(clean).logits), metric(model(corrupted).logits)
        by_position = patch_by_position(model, clean, corrupted, metric, runs_per_batch=3)
        by_head = patch_by_head(model, clean, corrupted, metric, runs_per_batch=5)
    # patching the whole residual at the changed position in layer 0 *is* the clean run
    torch.testing.assert_close(by_position[0, 3], clean_metric)
    # positions before the change (and after it in layer 0) carry identical activations: nothing moves
    torch.testing.assert_close(by_position[:, :3], corrupted_metric.expand(2, 3))
    torch.testing.assert_close(by_position[0, 4:], corrupted_metric.expand(3))
    estimate = attribution_patching(model, clean, corrupted, metric)
    assert (estimate[:, :3] == 0).all()
    assert correlation(estimate, by_position - corrupted_metric) > 0.8
    head_estimate = attribution_patching(model, clean, corrupted, metric, point="attn.hook_z", by="head")
    assert head_estimate.shape == by_head.shape == (2, 4)
    assert correlation(head_estimate, by_head - corrupted_metric) > 0.99


def test_attribution_with_frozen_weights_and_bad_pairs():
    model = tiny("llama").requires_grad_(False)
    clean, corrupted, metric = pair()
    assert attribution_patching(model, clean, corrupted, metric).abs().sum() > 0
    with pytest.raises(InterpretError, match=r"clean_ids \[4, 7\] and corrupted_ids \[4, 6\] differ in shape"):
        patch_by_position(model, clean, corrupted[:, :6], metric)
    with pytest.raises(InterpretError, match="per-query-head points"):
        patch_by_head(model, clean, corrupted, metric, point="hook_resid_pre")


def test_ablations():
    model = tiny("llama")
    clean, corrupted, _ = pair()
    names = ["blocks.0.attn.hook_z", "blocks.0.hook_attn_out", "blocks.1.hook_resid_pre"]
    _, reference = run_with_cache(model, corrupted, names=names)
    with hooks(model, {"blocks.0.attn.hook_z": ablation_hook("zero", heads=[1])}):
        _, cache = run_with_cache(model, clean, names=names)
    assert (cache["blocks.0.attn.hook_z"][:, :, 1] == 0).all() and (cache["blocks.0.attn.hook_z"][:, :, 0] != 0).all()
    with hooks(model, {"blocks.0.attn.hook_z": ablation_hook("zero")}):
        _, cache = run_with_cache(model, clean, names=names)
    assert (cache["blocks.0.hook_attn_out"] == 0).all()  # no o_proj bias: attention contributes nothing
    mean = reference["blocks.1.hook_resid_pre"].mean((0, 1))
    with hooks(model, {"blocks.1.hook_resid_pre": ablation_hook("mean", reference["blocks.1.hook_resid_pre"])}):
        _, cache = run_with_cache(model, clean[:, :5], names=names)
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre"], mean.expand(4, 5, -1))
    with hooks(model, {"blocks.1.hook_resid_pre": ablation_hook("resample", reference["blocks.1.hook_resid_pre"],
                                                                positions=[6])}):
        _, cache = run_with_cache(model, clean, names=names)
    resampled = cache["blocks.1.hook_resid_pre"]
    for row in resampled:  # every row's last position is some reference row's, the rest untouched
        assert any(torch.equal(row[6], ref[6]) for ref in reference["blocks.1.hook_resid_pre"])
    _, untouched = run_with_cache(model, clean, names=names)
    assert torch.equal(resampled[:, :6], untouched["blocks.1.hook_resid_pre"][:, :6])
    with pytest.raises(InterpretError, match="needs reference activations"):
        ablation_hook("mean")
    with pytest.raises(InterpretError, match="unknown ablation 'median'"):
        ablation_hook("median")


@pytest.mark.parametrize("family", ["gemma2", "qwen2"])
def test_logit_lens_last_layer_is_the_models_prediction(family):
    model = tiny(family)
    ids = torch.tensor([[3, 9, 4, 17, 9]])
    with torch.no_grad():
        lens = logit_lens(model, ids)
        logits = model(ids).logits
    assert lens.shape == (3, 1, 5, 64)
    torch.testing.assert_close(lens[-1], torch.log_softmax(logits, -1), rtol=0, atol=1e-5)
    assert not torch.allclose(lens[0], lens[-1], atol=1e-3)
    torch.testing.assert_close(logit_lens(model, ids, positions=[-1])[:, :, 0], lens[:, :, -1])


def test_head_scores_find_a_planted_induction_head():
    ids = repeated_tokens(2, 5, 64, bos=1, seed=0)
    perfect = induction_pattern(ids[0])
    perfect[:6, 0] = 1  # first copy: nothing to induct from, so the head rests on BOS
    assert score_patterns(perfect, induction_pattern(ids[0]), exclude_bos=True) == 1
    assert 0.4 < score_patterns(perfect, induction_pattern(ids[0])) < 0.6  # TL's "mul" quirk, see the docs
    model = tiny("llama")
    # plant the perfect pattern in layer 1 head 2, then score every head
    with torch.no_grad(), hooks(model, {"blocks.1.attn.hook_pattern": lambda p, _: _plant(p, perfect, head=2)}):
        scores = head_scores(model, ids[:1], "induction", exclude_bos=True)
    assert scores[1, 2] == 1 and scores.flatten().topk(2).values[1] < 0.5
    with pytest.raises(InterpretError, match="unknown head kind 'inductive'"):
        head_scores(model, ids, "inductive")


def _plant(pattern: torch.Tensor, planted: torch.Tensor, head: int) -> torch.Tensor:
    pattern = pattern.clone()
    pattern[:, head] = planted
    return pattern
