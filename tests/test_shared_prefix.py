"""Shared-prefix forwards (each prompt computed once, its KV cache reused by every completion) give the same
log-probs, gradients and DPO steps as the ordinary one-row-per-completion layout (GRPO:
test_shared_prefix_online.py)."""

from __future__ import annotations

import pytest
import torch
from conftest import pair_rows, write_jsonl
from safetensors.torch import load_file

import alignlab.core.logprobs as logprobs
from alignlab.config import load_config
from alignlab.core.logprobs import pair_logprobs
from alignlab.core.metrics import read_metrics
from alignlab.core.models import tiny_llama
from alignlab.core.records import user
from alignlab.core.tokenize import (
    IGNORE_INDEX,
    PairCollator,
    SharedPrefixPairCollator,
    encode_completion,
    shared_prefix_batch,
)
from alignlab.outer.preference import PreferenceConfig, train_preference


@pytest.fixture
def count_shared(count_calls) -> list[int]:
    """Counts shared-prefix forwards, so a test fails if the shared path is silently not taken."""
    return count_calls(logprobs, "shared_prefix_logits")


def test_shared_prefix_batch_layout():
    b = shared_prefix_batch([[1, 2, 3], [4, 5]], [[6, 7], [8], [9, 10, 11]], [0, 1, 0], pad_token_id=0,
                            pad_to_multiple_of=1)
    assert b["prompt_ids"].tolist() == [[1, 2], [4, 0]] and b["prompt_mask"].tolist() == [[1, 1], [1, 0]]
    assert b["input_ids"].tolist() == [[3, 6, 7, 0], [5, 8, 0, 0], [3, 9, 10, 11]]
    assert b["position_ids"].tolist() == [[2, 3, 4, 5], [1, 2, 3, 4], [2, 3, 4, 5]]  # continue each own prompt
    assert b["labels"].tolist() == [[6, 7, IGNORE_INDEX], [8, IGNORE_INDEX, IGNORE_INDEX], [9, 10, 11]]
    with pytest.raises(ValueError, match="at least 2 tokens"):
        shared_prefix_batch([[1]], [[2]], [0], pad_token_id=0)


def _pairs(tok) -> list[dict]:
    # prompts of different lengths; answers of different lengths, one of a single token (just EOS)
    items = [("Capital of Zorbia?", "Vell.", "I think it is Paris, of course."),
             ("Two plus two, please? Quickly now.", "Four.", ""),
             ("Hi", "Hello! How can I help you today?", "No.")]
    return [{"chosen": encode_completion(tok, [user(q)], a), "rejected": encode_completion(tok, [user(q)], b)}
            for q, a, b in items]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_shared_pair_logprobs_and_gradients_equal_the_ordinary_ones(tok, attention):
    model = tiny_llama(len(tok), hidden_size=32, layers=2, heads=2, seed=0, pad_token_id=tok.pad_token_id)
    model.config._attn_implementation = attention
    examples = _pairs(tok)
    assert min(len(e["rejected"]["completion_ids"]) for e in examples) == 1
    results = {}
    for name, collate in [("ordinary", PairCollator(tok.pad_token_id)), ("shared", SharedPrefixPairCollator(tok.pad_token_id))]:
        model.zero_grad()
        out = pair_logprobs(model, collate(examples))
        (out["chosen_logp"] * torch.tensor([0.3, -1.0, 2.0]) + out["rejected_logp"]).sum().backward()
        results[name] = out, {n: p.grad.clone() for n, p in model.named_parameters()}
    (ordinary, grads), (shared, shared_grads) = results["ordinary"], results["shared"]
    for key in ordinary:
        torch.testing.assert_close(shared[key], ordinary[key], atol=1e-5, rtol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(shared_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_shared_collator_refuses_pairs_with_different_prompts(tok):
    a = encode_completion(tok, [user("Hi")], "Hello.")
    b = encode_completion(tok, [user("Two plus two?")], "Four.")
    with pytest.raises(ValueError, match="share the prompt"):
        SharedPrefixPairCollator(tok.pad_token_id)([{"chosen": a, "rejected": b}])


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from conftest import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def test_dpo_steps_are_the_same_with_and_without_a_shared_prefix(tiny_model_dir, tmp_path, count_shared):
    """Plain SGD, so the two runs' weights differ only by lr x (their gradients' float difference) per step.

    The layouts sum the same terms in a different order, so fp32 rounding (2^-24 relative per operation) leaves
    the loss and gradient equal to a few 1e-6 relative: metrics are compared at rel 1e-4, and each gradient
    element at the 1e-5 of the gradient test above, which bounds the weights' difference after k steps by
    k x lr x 1e-5. (Adam would divide a near-zero gradient's rounding noise by its own size and take a
    full-size step on it, so Adam runs are not comparable weight by weight.)
    """
    data = write_jsonl(tmp_path / "pairs.jsonl", pair_rows(16))
    steps, lr = 3, 0.1
    runs = {}
    for shared in (True, False):
        out = tmp_path / f"shared-{shared}"
        cfg = load_config(PreferenceConfig, None, [
            f"model.name_or_path={tiny_model_dir}", f"data.path={data}", f"output={out}", f"shared_prefix={shared}",
            f"reference_cache_dir={out / 'cache'}", "train.progress=false", "train.batch_size=4",
            "train.mixed_precision=no", f"train.max_steps={steps}", "train.optimizer=sgd", f"train.lr={lr}",
            "beta=0.5"])
        before = len(count_shared)
        train_preference(cfg)
        runs[shared] = read_metrics(out / "metrics.jsonl"), load_file(str(out / "model.safetensors"))
        # 16 pairs at reference batch 8: 2 reference forwards, then 3 training steps
        assert len(count_shared) - before == (5 if shared else 0)
    (rows_s, weights_s), (rows_o, weights_o) = runs[True], runs[False]
    assert len(rows_s) == len(rows_o) == steps
    for a, b in zip(rows_s, rows_o):
        for key in ("loss", "grad_norm", "rewards_chosen", "rewards_rejected"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    start = load_file(str(tiny_model_dir / "model.safetensors"))
    atol = steps * lr * 1e-5
    assert max(float((w - start[name]).abs().max()) for name, w in weights_o.items()) > 100 * atol  # it trained
    for name, w in weights_o.items():
        torch.testing.assert_close(weights_s[name], w, atol=atol, rtol=0, msg=name)
