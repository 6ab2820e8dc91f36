"""GRPO with shared prefixes: each prompt computed once per group in the policy forward/backward (a KV cache
with gradients) and prefilled once in generation, with the same log-probs, values, gradients, samples and steps
as the ordinary one-row-per-completion layout."""

from __future__ import annotations

import pytest
import torch
from conftest import write_jsonl
from safetensors.torch import load_file

from alignlab.config import load_config
from alignlab.outer.online.grpo import GRPOConfig, train_grpo
from alignlab.outer.online.rollout import ActorCritic, pad_rollout


@pytest.fixture
def count_shared(count_calls) -> list[int]:
    """Counts shared-prefix forwards of the policy, so a test fails if the shared path is silently not taken."""
    import alignlab.outer.online.rollout as rollout

    return count_calls(rollout, "shared_prefix_logits")


def test_grpo_forward_shares_prompts_with_the_same_logits_values_and_gradients(tiny_model_dir):
    from alignlab.core.models import load_causal_lm
    from alignlab.outer.online.rollout import policy_forward

    lm = load_causal_lm(str(tiny_model_dir))
    prompts = [[5, 6, 7, 8, 9], [10, 11, 12]]
    completions = [[13, 14, 15], [16], [17, 18], [19, 20, 21, 22], [23, 24]]
    index = [0, 0, 1, 0, 1]  # 3 completions of prompt 0, 2 of prompt 1, interleaved as a shuffled minibatch would be
    ids, attn, mask = pad_rollout([prompts[i] for i in index], completions, 0)
    batch = {"input_ids": ids, "attention_mask": attn, "mask": mask, "prompt_index": torch.tensor(index)}
    weights = torch.linspace(-1, 1, mask.numel()).view_as(mask)
    actor = ActorCritic(lm, ("value",))
    outs = {}
    for shared in (True, False):
        actor.shared_prefix = shared
        actor.zero_grad()
        out = policy_forward(actor, batch)
        ((out.logps * weights + out.values["value"] * weights) * mask).sum().backward()
        outs[shared] = out, {n: p.grad.clone() for n, p in actor.named_parameters()}
    (shared, grads_s), (ordinary, grads_o) = outs[True], outs[False]
    on = mask.bool()
    torch.testing.assert_close(shared.logps[on], ordinary.logps[on], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.entropy[on], ordinary.entropy[on], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.values["value"][on], ordinary.values["value"][on], atol=1e-5, rtol=1e-5)
    for name, grad in grads_o.items():
        torch.testing.assert_close(grads_s[name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize(("extra", "updates"), [([], 2), (["ppo_epochs=2", "minibatch_size=2"], 2 * 2 * 3)])
def test_grpo_steps_are_the_same_with_and_without_a_shared_prefix(tiny_model_dir, tmp_path, count_shared, extra,
                                                                    updates):
    """Same samples (generation does not depend on the layout), so the same losses, KL and weights.

    Plain SGD: each of the ``updates`` optimiser steps moves the two runs' weights apart by at most lr x the
    gradients' float difference, which the gradient test above bounds by 1e-5 per element (the layouts sum
    in different orders), so the weights agree to updates x lr x 1e-5. Adam would divide a near-zero
    gradient's rounding noise by its own size and take a full-size step on it. The samples of step 2 come
    from these nearly equal weights: a token differs only if a uniform draw falls within float noise of a
    boundary of the sampling distribution, which is negligible.
    """
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": [{"role": "user", "content": q}]}
                                                       for q in ["Hi", "What is the capital of Zorbia?", "Two plus two?"]])
    runs = {}
    for shared in (True, False):
        out = tmp_path / f"shared-{shared}"
        cfg = load_config(GRPOConfig, None, [
            f"model.name_or_path={tiny_model_dir}", f"data.path={prompts}", f"output={out}", f"shared_prefix={shared}",
            "train.progress=false", "train.max_steps=2", "train.lr=0.1", "train.optimizer=sgd", "train.mixed_precision=no",
            "generation.max_new_tokens=6", "prompts_per_step=2", "group_size=3", "minibatch_size=6", "beta=0.1",
            *extra])
        before = len(count_shared)
        result = train_grpo(cfg, reward=lambda p, c: [float(len(x)) for x in c])
        runs[shared] = result.history, load_file(str(out / "model.safetensors"))
        assert (len(count_shared) > before) == shared
    (rows_s, weights_s), (rows_o, weights_o) = runs[True], runs[False]
    for a, b in zip(rows_s, rows_o):
        assert a["completion_length"] == b["completion_length"] and a["reward"] == b["reward"]
        for key in ("loss", "kl", "entropy", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    atol = updates * 0.1 * 1e-5  # lr 0.1
    assert max(float((w - start[name]).abs().max()) for name, w in weights_o.items()) > 100 * atol  # it trained
    for name, w in weights_o.items():
        torch.testing.assert_close(weights_s[name], w, atol=atol, rtol=0, msg=name)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefill_generates_the_same_samples(tiny_model_dir, temperature, monkeypatch):
    import alignlab.core.generation as generation
    from alignlab.core.models import load_causal_lm, load_tokenizer

    used: list[bool] = []
    real = generation.shared_prefill

    def spy(*args):
        cache = real(*args)
        used.append(cache is not None)
        return cache

    monkeypatch.setattr(generation, "shared_prefill", spy)
    model, tok = load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    prompts = [[{"role": "user", "content": q}] for q in ["Hi", "What is the capital of Zorbia?"] for _ in range(3)]
    outs = {}
    for shared in (True, False):
        torch.manual_seed(3)
        cfg = generation.GenerationConfig(max_new_tokens=12, temperature=temperature, shared_prefill=shared)
        outs[shared] = generation.generate(model, tok, prompts, cfg)
    assert used == [True]  # only the shared run prefilled itself
    assert outs[True].completion_ids == outs[False].completion_ids and outs[True].finished == outs[False].finished
    if temperature:
        assert len({tuple(c) for c in outs[True].completion_ids}) > 2  # sampled: the repeats really differ
