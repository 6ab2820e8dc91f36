"""Parity with TransformerLens 4.3's TransformerBridge on the same tiny weights (weight processing off, so
both compute the HF model): cached activations, detect_head scores, activation patching."""

from __future__ import annotations

import pytest
import torch

from alignlab.interpret.families import FAMILIES
from alignlab.interpret.heads import head_scores
from alignlab.interpret.hooks import run_with_cache
from alignlab.interpret.patching import logit_difference, patch_by_head, patch_by_position
from alignlab.interpret.peer import transformer_lens_bridge

pytestmark = pytest.mark.xdist_group("interpret")
bridge_module = pytest.importorskip("transformer_lens.model_bridge")
tl_patching = pytest.importorskip("transformer_lens.patching")
tl_heads = pytest.importorskip("transformer_lens.head_detector")

from test_interpret_hooks import IDS, tiny  # noqa: E402

VOCAB = 64


@pytest.fixture(scope="module")
def llama_pair(tmp_path_factory):
    model = tiny("llama")
    return model, transformer_lens_bridge(model, tmp_path_factory.mktemp("bridge"))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cached_activations_equal_the_bridge(family, tmp_path):
    model = tiny(family)
    bridge = transformer_lens_bridge(model, tmp_path)
    names = [f"blocks.{layer}.{point}" for layer in range(2)
             for point in ("hook_resid_pre", "attn.hook_pattern", "attn.hook_z", "hook_mlp_out")]
    with torch.no_grad():
        logits, ours = run_with_cache(model, IDS, names=names)
        tl_logits, theirs = bridge.run_with_cache(IDS)
    for name in names:
        torch.testing.assert_close(ours[name], theirs[name], rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(logits, tl_logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["previous_token", "duplicate_token", "induction"])
@pytest.mark.parametrize("options", [dict(), dict(exclude_bos=True), dict(exclude_current_token=True),
                                     dict(exclude_bos=True, error_measure="abs")])
def test_head_scores_equal_detect_head(llama_pair, kind, options):
    model, bridge = llama_pair
    prompts = ["t5 t9 t12 t7 t5 t9 t12 t7", "t3 t3 t8 t11 t8 t3 t11 t4"]
    ids = torch.stack([bridge.to_tokens(p)[0] for p in prompts])  # the same tokens detect_head will see (BOS)
    assert (ids[:, 0] == 1).all()
    with torch.no_grad():
        ours = head_scores(model, ids, kind, **options)
        theirs = tl_heads.detect_head(bridge, prompts, f"{kind}_head", **options)
    # detect_head rounds its "abs" score to 3 decimals
    tolerance = 5e-4 if options.get("error_measure") == "abs" else 1e-6
    torch.testing.assert_close(ours, theirs.to(ours.dtype), rtol=0, atol=tolerance)
    assert ours.std() > 0  # the scores distinguish heads, so equality is not vacuous


def test_activation_patching_equals_transformer_lens(llama_pair):
    model, bridge = llama_pair
    generator = torch.Generator().manual_seed(1)
    clean = torch.randint(3, VOCAB, (3, 7), generator=generator)
    corrupted = clean.clone()
    corrupted[:, 2] = torch.randint(3, VOCAB, (3,), generator=generator)
    metric = logit_difference(torch.tensor([4, 5, 6]), torch.tensor([7, 8, 9]))
    with torch.no_grad():
        ours = patch_by_position(model, clean, corrupted, metric, runs_per_batch=5)
        _, clean_cache = bridge.run_with_cache(clean)
        theirs = tl_patching.get_act_patch_resid_pre(bridge, corrupted, clean_cache, metric)
        ours_heads = patch_by_head(model, clean, corrupted, metric, runs_per_batch=3)
        theirs_heads = tl_patching.get_act_patch_attn_head_out_all_pos(bridge, corrupted, clean_cache, metric)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(ours_heads, theirs_heads, rtol=0, atol=1e-5)
    assert (ours[:, 2] - ours[:, 0]).abs().max() > 1e-4  # patching the changed position matters
