"""The one generator: ids with EOS kept, finished flags, batching that changes nothing, greedy tokens and the
sampling distribution of transformers' ``generate``, seeds, stop strings and timeouts."""

from __future__ import annotations

import time

import pytest
import torch

from alignlab.core.generation import (
    GenerationConfig,
    cut_at_stop,
    encode_prompts,
    generate,
    kv_cache,
    left_pad,
    next_tokens,
)
from alignlab.core.logprobs import cache_keyword
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.errors import ConfigError, ModelError

PROMPTS = [[{"role": "user", "content": "Hi"}],
           [{"role": "user", "content": "What is the capital of Zorbia? Two plus two?"}],
           [{"role": "user", "content": "Reverse cat."}]]


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def hf_generate(model, tok, prompt_ids, new_tokens, **sampling):
    """transformers' own ``generate`` on the same left-padded batch: the reference the loop must match."""
    ids, mask = left_pad(prompt_ids, tok.pad_token_id)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, **sampling)
    return out[:, ids.shape[1]:].tolist()


def test_batched_left_padded_greedy_equals_one_by_one(lm):
    model, tok = lm
    cfg = GenerationConfig(max_new_tokens=6, temperature=0.0, batch_size=8)
    batched = generate(model, tok, PROMPTS, cfg)
    single = [generate(model, tok, [p], cfg) for p in PROMPTS]
    assert batched.completion_ids == [s.completion_ids[0] for s in single]
    assert batched.texts == [tok.decode(c, skip_special_tokens=True) for c in batched.completion_ids]
    assert batched.prompt_ids == encode_prompts(tok, PROMPTS)
    assert batched.seconds > 0 and batched.num_tokens == sum(map(len, batched.completion_ids))


def test_greedy_tokens_equal_transformers_generate(lm):
    model, tok = lm
    prompt_ids = encode_prompts(tok, PROMPTS * 2)
    for shared_prefill in (False, True):
        ours = generate(model, tok, prompt_ids, GenerationConfig(max_new_tokens=10, temperature=0.0,
                                                                 shared_prefill=shared_prefill))
        theirs = hf_generate(model, tok, prompt_ids, 10, do_sample=False)
        for mine, ref in zip(ours.completion_ids, theirs):
            assert mine == ref[:len(mine)]  # transformers pads a finished row out to the batch's length
            assert all(t == tok.pad_token_id for t in ref[len(mine):])


def test_kv_cache_hands_attention_only_the_written_positions(lm):
    """The preallocated cache returns views of what was written (no empty tail to attend over, no copy), and the
    logits of a decoding step over it equal those of one forward over the whole sequence."""
    model, _ = lm
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    cache = kv_cache(model, capacity=8)
    with torch.no_grad():
        model(input_ids=ids[:, :4], use_cache=True, **{cache_keyword(model): cache})
        step = model(input_ids=ids[:, 4:], use_cache=True, **{cache_keyword(model): cache}).logits[0, -1]
        whole = model(input_ids=ids).logits[0, -1]
    layer = cache.layers[0]
    keys, _ = layer.update(torch.zeros(1, *layer.keys.shape[1:2], 1, layer.keys.shape[-1]),
                           torch.zeros(1, *layer.values.shape[1:2], 1, layer.values.shape[-1]))
    assert keys.shape[-2] == 6 and keys.data_ptr() == layer.keys.data_ptr()  # 5 written + this one, a view
    assert layer.get_mask_sizes(1) == (7, 0)
    torch.testing.assert_close(step, whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("sampling", [{"temperature": 1.0}, {"temperature": 0.5},
                                      {"temperature": 0.7, "top_k": 3}, {"temperature": 1.3, "top_p": 0.8},
                                      {"temperature": 0.9, "top_k": 4, "top_p": 0.7}])
def test_sampling_draws_from_the_distribution_transformers_warpers_define(sampling):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    logits = torch.tensor([[2.0, 1.5, 1.0, 0.3, 0.0, -1.0, -3.0]])
    cfg = GenerationConfig(**sampling)
    scores = TemperatureLogitsWarper(cfg.temperature)(None, logits.clone())
    if cfg.top_k:
        scores = TopKLogitsWarper(cfg.top_k)(None, scores)
    if cfg.top_p < 1:
        scores = TopPLogitsWarper(cfg.top_p)(None, scores)
    want = scores.softmax(-1)[0]
    n = 40_000
    draws = next_tokens(logits.expand(n, -1), cfg, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=logits.shape[1]).double() / n
    assert torch.all(freq[want == 0] == 0)  # a filtered token is never drawn
    # Each frequency is a binomial mean: within 5 standard deviations of its probability.
    sd = (want.double() * (1 - want.double()) / n).sqrt()
    assert torch.all((freq - want.double()).abs() <= 5 * sd + 1e-12), (freq, want)


def test_finished_rows_keep_eos_and_cut_rows_are_unfinished(lm):
    # Make the token greedy decoding writes third in the first completion an EOS token: that row must stop
    # right after it, keep it and be finished; the rows that never write it run to max_new_tokens, unfinished.
    model, tok = lm
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.0)
    free = generate(model, tok, PROMPTS, cfg).completion_ids
    stop_token = free[0][2]
    assert stop_token not in free[0][:2]
    saved = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, stop_token]
    try:
        out = generate(model, tok, PROMPTS, cfg)
    finally:
        model.generation_config.eos_token_id = saved
    assert out.completion_ids[0] == free[0][:3] and out.finished[0]
    for ids, done, before in zip(out.completion_ids[1:], out.finished[1:], free[1:]):
        if stop_token in before:
            assert done and ids == before[:before.index(stop_token) + 1]
        else:
            assert not done and ids == before and len(ids) == 8


def test_seed_makes_sampling_repeatable_without_touching_the_global_rng(lm):
    model, tok = lm
    cfg = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=3)
    state = torch.get_rng_state()
    first, again = generate(model, tok, PROMPTS * 2, cfg), generate(model, tok, PROMPTS * 2, cfg)
    assert torch.equal(torch.get_rng_state(), state)
    assert first.completion_ids == again.completion_ids
    other = generate(model, tok, PROMPTS * 2, GenerationConfig(max_new_tokens=8, temperature=1.0, seed=4))
    assert other.completion_ids != first.completion_ids


def test_stop_string_finishes_a_row_and_cuts_its_text(lm):
    model, tok = lm
    cfg = GenerationConfig(max_new_tokens=8, temperature=0.0)
    free = generate(model, tok, PROMPTS[:1], cfg)
    text = free.texts[0]
    stop = next(text[i:i + 2] for i in range(1, len(text) - 1) if text[i:i + 2].strip() and text[i:i + 2] not in text[:i + 1])
    out = generate(model, tok, PROMPTS[:1], GenerationConfig(max_new_tokens=8, temperature=0.0, stop=[stop]))
    assert out.finished == [True] and out.texts == [text[:text.index(stop)]]
    assert out.completion_ids[0] == free.completion_ids[0][:len(out.completion_ids[0])]
    assert len(out.completion_ids[0]) < len(free.completion_ids[0])  # it stopped early


def test_a_slow_generation_hits_its_timeout(lm, monkeypatch):
    model, tok = lm
    forward = model.forward

    def slow(*args, cache=None, **kwargs):
        time.sleep(0.05)
        return forward(*args, cache=cache, **kwargs)

    monkeypatch.setattr(model, "forward", slow)
    start = time.perf_counter()
    with pytest.raises(ModelError, match="timeout_s"):
        generate(model, tok, PROMPTS, GenerationConfig(max_new_tokens=64, temperature=0.0, timeout_s=0.2))
    assert time.perf_counter() - start < 1.0  # 64 slow steps would take 3 s


def test_cut_at_stop_and_left_pad():
    assert cut_at_stop("abc\n\nQ: x", ["\n\n", "Q:"]) == "abc" and cut_at_stop("abc", None) == "abc"
    ids, mask = left_pad([[1, 2], [3]], 0)
    assert ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[1, 1], [0, 1]]


def test_bad_generation_settings_are_clear_errors(lm):
    model, tok = lm
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ConfigError, match="stop"):
        GenerationConfig(stop=[""])
    with pytest.raises(ConfigError, match="empty"):
        generate(model, tok, [], GenerationConfig())
    with pytest.raises(ConfigError, match="engine"):
        generate(model, tok, PROMPTS, GenerationConfig(backend="vllm"))
