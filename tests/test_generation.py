"""Generation interface: batched left-padded generation equals one-by-one, EOS handling, clear errors."""

from __future__ import annotations

import pytest
import torch

from alignlab.core.generation import GenerationConfig, cut_at_eos, encode_prompts, generate, left_pad
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.errors import ConfigError, ModelError

PROMPTS = [[{"role": "user", "content": "Hi"}],
           [{"role": "user", "content": "What is the capital of Zorbia? Two plus two?"}],
           [{"role": "user", "content": "Reverse cat."}]]


@pytest.fixture(scope="module")
def lm(tiny_model_dir):
    return load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))


def test_batched_left_padded_greedy_equals_one_by_one(lm):
    model, tok = lm
    cfg = GenerationConfig(max_new_tokens=6, temperature=0.0, batch_size=8)
    batched = generate(model, tok, PROMPTS, cfg)
    single = [generate(model, tok, [p], cfg) for p in PROMPTS]
    assert batched.completion_ids == [s.completion_ids[0] for s in single]
    assert batched.texts == [tok.decode(c, skip_special_tokens=True) for c in batched.completion_ids]
    assert batched.prompt_ids == encode_prompts(tok, PROMPTS)
    assert batched.seconds > 0


def test_unfinished_completions_have_max_new_tokens_and_finished_end_with_eos(lm):
    model, tok = lm
    out = generate(model, tok, PROMPTS * 3, GenerationConfig(max_new_tokens=4, temperature=1.0))
    for ids, done in zip(out.completion_ids, out.finished):
        if done:
            assert ids[-1] == tok.eos_token_id and tok.eos_token_id not in ids[:-1]
        else:
            assert len(ids) == 4 and tok.eos_token_id not in ids


def test_cut_at_eos_and_left_pad():
    rows, done = cut_at_eos(torch.tensor([[5, 2, 7, 2], [5, 6, 7, 8]]), {2})
    assert rows == [[5, 2], [5, 6, 7, 8]] and done == [True, False]
    ids, mask = left_pad([[1, 2], [3]], 0)
    assert ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[1, 1], [0, 1]]


def test_bad_generation_settings_are_clear_errors(lm):
    model, tok = lm
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ConfigError, match="empty"):
        generate(model, tok, [], GenerationConfig())


def test_vllm_backend_says_why_it_cannot_run(tiny_model_dir):
    from alignlab.core.generation import VLLMGenerator

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; this checks the CPU error message")
    with pytest.raises(ModelError, match="vLLM|vllm"):
        VLLMGenerator(str(tiny_model_dir), GenerationConfig(backend="vllm"))
