"""Hook points on every mapped family: names resolve, shapes are TransformerLens's, replacements take effect,
hooks are removed on exit and on errors, names= caches only what is asked, bad input is one clear error."""

from __future__ import annotations

import pytest
import torch
import transformers as T

from alignlab.errors import InterpretError
from alignlab.interpret.families import FAMILIES, tiny_model
from alignlab.interpret.hooks import ActivationCache, hook_points, hooks, run_with_cache

pytestmark = pytest.mark.xdist_group("interpret")

def tiny(family: str) -> torch.nn.Module:
    return tiny_model(family)


IDS = torch.tensor([[3, 9, 4, 17, 9, 4], [5, 6, 7, 8, 1, 2]])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_hook_points_shapes_and_replacements(family):
    model = tiny(family)
    b, p, h, d, m = 2, 6, 4, 8, 32
    h_kv = 4 if family == "gpt2" else 2
    with torch.no_grad():
        reference = model(IDS).logits
        logits, cache = run_with_cache(model, IDS)
    assert set(cache) == set(hook_points(model))
    torch.testing.assert_close(logits, reference, rtol=0, atol=1e-5)  # eager vs the model's own attention
    assert cache["unembed.hook_out"].shape == (b, p, 64)
    assert cache["blocks.1.hook_resid_pre"].shape == (b, p, m)
    assert cache["blocks.1.attn.hook_q"].shape == (b, p, h, d)
    assert cache["blocks.1.attn.hook_k"].shape == (b, p, h_kv, d)
    assert cache["blocks.1.attn.hook_pattern"].shape == (b, h, p, p)
    assert cache["blocks.1.attn.hook_z"].shape == (b, p, h, d)
    assert cache["blocks.1.attn.hook_result"].shape == (b, p, h, m)
    assert cache["blocks.1.mlp.hook_post"].shape == (b, p, 48)
    # the residual stream's bookkeeping: pre + attn_out = mid, mid + mlp_out = post = next pre
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"],
                               cache["blocks.0.hook_resid_mid"])
    torch.testing.assert_close(cache["blocks.0.hook_resid_mid"] + cache["blocks.0.hook_mlp_out"],
                               cache["blocks.0.hook_resid_post"])
    assert torch.equal(cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_pre"])
    pattern = cache["blocks.0.attn.hook_pattern"]
    torch.testing.assert_close(pattern.sum(-1), torch.ones(b, h, p))
    assert pattern.triu(1).abs().max() == 0  # causal
    # the heads' results sum to what the output projection computes (plus its bias)
    attn = model.get_submodule({"gpt2": "transformer.h.1.attn"}.get(family, "model.layers.1.self_attn"))
    bias = getattr(attn, "c_proj" if family == "gpt2" else "o_proj").bias
    if family in ("llama", "mistral", "qwen2", "gemma", "phi3", "gpt2"):  # attention's output is its o_proj's
        torch.testing.assert_close(cache["blocks.1.attn.hook_result"].sum(-2) + (0 if bias is None else bias),
                                   cache["blocks.1.hook_attn_out"])
    # every point changes the logits when it is replaced, and an identity replacement changes nothing
    for name in hook_points(model):
        with torch.no_grad(), hooks(model, {name: lambda act, _: act.clone()}):
            same = model(IDS).logits
        torch.testing.assert_close(same, reference, rtol=0, atol=1e-5)
        with torch.no_grad(), hooks(model, {name: lambda act, _: torch.full_like(act, 0.5)}):
            changed = model(IDS).logits
        assert not torch.allclose(changed, reference, atol=1e-4), name


def test_replacement_is_what_later_points_see():
    model = tiny("llama")
    with torch.no_grad(), hooks(model, {"blocks.0.hook_resid_mid": lambda act, _: act * 2}):
        _, cache = run_with_cache(model, IDS, names=["blocks.0.hook_resid_mid", "blocks.0.hook_mlp_in"])
    _, clean = run_with_cache(model, IDS, names=["blocks.0.hook_resid_mid"])
    torch.testing.assert_close(cache["blocks.0.hook_resid_mid"], 2 * clean["blocks.0.hook_resid_mid"])
    rms = model.model.layers[0].post_attention_layernorm
    torch.testing.assert_close(cache["blocks.0.hook_mlp_in"], rms(2 * clean["blocks.0.hook_resid_mid"]))


def test_pattern_replacement_changes_z_as_attention_does():
    model = tiny("llama")
    uniform = torch.tril(torch.ones(6, 6)) / torch.arange(1, 7).unsqueeze(1)
    with torch.no_grad(), hooks(model, {"blocks.0.attn.hook_pattern": lambda p, _: uniform.expand_as(p)}):
        _, cache = run_with_cache(model, IDS, names=["blocks.0.attn.hook_v", "blocks.0.attn.hook_z"])
    v = cache["blocks.0.attn.hook_v"].repeat_interleave(2, dim=2)  # [b, p, h, d]: 2 query heads per kv head
    expected = torch.einsum("qk,bkhd->bqhd", uniform, v)
    torch.testing.assert_close(cache["blocks.0.attn.hook_z"], expected)


def test_names_filter_caches_only_what_is_asked_and_attention_stays_sdpa():
    model = tiny("llama")
    _, cache = run_with_cache(model, IDS, names=["blocks.1.hook_resid_post", "blocks.0.attn.hook_z"])
    assert set(cache) == {"blocks.1.hook_resid_post", "blocks.0.attn.hook_z"}
    _, cache = run_with_cache(model, IDS, names=lambda n: n.endswith("hook_pattern"))
    assert set(cache) == {"blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"}
    assert model.config._attn_implementation == "sdpa"


def test_hooks_are_removed_on_exit_and_on_exceptions():
    model = tiny("phi3")

    def hook_counts():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

    before = hook_counts()
    with pytest.raises(RuntimeError, match="boom"), hooks(model, {n: lambda a, _: None for n in hook_points(model)}):
        assert hook_counts() > before
        assert model.config._attn_implementation != "sdpa"
        raise RuntimeError("boom")
    assert hook_counts() == before and model.config._attn_implementation == "sdpa"
    assert all(not getattr(m, "_alignlab_attention_hooks", []) for m in model.modules())

    def failing(act, name):
        raise ValueError("inside the forward")

    with pytest.raises(ValueError), hooks(model, {"blocks.1.hook_mlp_out": failing}):
        model(IDS)
    assert hook_counts() == before


def test_bad_input_is_one_clear_error():
    model = tiny("gpt2")
    with pytest.raises(InterpretError, match="did you mean 'blocks.0.hook_resid_pre'"):
        run_with_cache(model, IDS, names=["blocks.0.hook_resid_pr"])
    with (pytest.raises(InterpretError, match="layer 5 out of range; the model has 2 layers"),
          hooks(model, {"blocks.5.hook_resid_pre": lambda a, _: None})):
        pass
    with pytest.raises(InterpretError, match="gpt2 models have no 'attn.hook_rot_q'"):
        run_with_cache(model, IDS, names=["blocks.0.attn.hook_rot_q"])
    with (pytest.raises(InterpretError, match="returned \\(3,\\); a replacement must be"),
          hooks(model, {"hook_embed": lambda a, _: torch.zeros(3)})):
        model(IDS)
    with pytest.raises(InterpretError, match="not in the cache"):
        ActivationCache({})["blocks.0.hook_z"]
    assert "blocks.0.hook_z" not in ActivationCache({}) and ActivationCache({}).get("blocks.0.hook_z") is None
    unmapped = T.AutoModelForCausalLM.from_config(T.OPTConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                                                ffn_dim=32, num_attention_heads=2))
    with pytest.raises(InterpretError, match="no hook mapping for model family 'opt'.*FAMILIES"):
        hook_points(unmapped)


def test_hooks_reach_through_a_lora_adapter():
    from alignlab.core.models import add_lora

    model = add_lora(tiny("llama"), {"r": 4, "target_modules": ["q_proj", "o_proj"]})
    for name, parameter in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: make the adapter change something
            torch.nn.init.normal_(parameter, std=0.5)
    names = ["blocks.1.attn.hook_result", "blocks.1.hook_attn_out", "blocks.1.attn.hook_q"]
    with torch.no_grad():
        _, cache = run_with_cache(model, IDS, names=names)
        with model.disable_adapter():
            _, base = run_with_cache(model, IDS, names=names)
    assert not torch.allclose(cache["blocks.1.attn.hook_q"], base["blocks.1.attn.hook_q"])
    torch.testing.assert_close(cache["blocks.1.attn.hook_result"].sum(-2), cache["blocks.1.hook_attn_out"])
    torch.testing.assert_close(base["blocks.1.attn.hook_result"].sum(-2), base["blocks.1.hook_attn_out"])
