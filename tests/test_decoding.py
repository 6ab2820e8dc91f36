"""Decoding-time alignment: DExperts' logit arithmetic through the one generator, and anti-expert re-ranking."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model

from alignlab.core.generation import GenerationConfig, generate, nucleus
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.errors import ModelError
from alignlab.outer.decoding import LogitArithmetic, dexperts, rerank_by_anti_expert

PROMPTS = [[{"role": "user", "content": "Hello!"}], [{"role": "user", "content": "Two plus two?"}]]


@pytest.fixture(scope="module")
def three_models(tiny_model_dir, tmp_path_factory):
    tok = load_tokenizer(str(tiny_model_dir))
    root = tmp_path_factory.mktemp("experts")
    expert, anti = (build_model(root / name, tok, seed=seed).eval() for name, seed in (("expert", 1), ("anti", 2)))
    return tok, load_causal_lm(str(tiny_model_dir)).eval(), expert, anti


@pytest.mark.parametrize("base_top_p", [1.0, 0.5])
def test_dexperts_logits_are_the_weighted_sum_at_every_step(three_models, base_top_p) -> None:
    """Greedy decoding through the cached generator picks, at each step, the argmax of top-p(z_base) + α(z_e − z_a)
    computed by full forwards of the three models on the text so far (also with the prompts repeated, which the
    generator prefills once and copies)."""
    tok, base, expert, anti = three_models
    steered = dexperts(base, expert, anti, alpha=2.0, base_top_p=base_top_p)
    out = generate(steered, tok, PROMPTS * 2, GenerationConfig(max_new_tokens=6, temperature=0.0))
    for prompt_ids, completion in zip(out.prompt_ids, out.completion_ids):
        ids = list(prompt_ids)
        for token in completion:
            x = torch.tensor([ids])
            with torch.no_grad():
                z = nucleus(base(x).logits[0, -1], base_top_p) + 2.0 * (expert(x).logits[0, -1] - anti(x).logits[0, -1])
            assert token == int(z.argmax())
            ids.append(token)


def test_alpha_zero_is_the_base_model(three_models) -> None:
    tok, base, expert, anti = three_models
    config = GenerationConfig(max_new_tokens=8, temperature=1.0, seed=3)
    plain = generate(base, tok, PROMPTS, config).completion_ids
    assert generate(dexperts(base, expert, anti, alpha=0.0, base_top_p=1.0), tok, PROMPTS, config).completion_ids == plain


def test_rerank_keeps_the_sample_the_anti_expert_likes_least(three_models) -> None:
    """With the anti-expert equal to the model itself every score ties at 0 and the first sample is kept; with
    a real anti-expert the kept answer is one of the model's samples (same seed, same draws)."""
    tok, base, _, anti = three_models
    config = GenerationConfig(max_new_tokens=5, temperature=1.0, seed=0)
    first = rerank_by_anti_expert(base, base, tok, PROMPTS, n=4, config=config)
    samples = generate(base, tok, [p for p in PROMPTS for _ in range(4)], config).texts
    assert first == [samples[0], samples[4]]
    chosen = rerank_by_anti_expert(base, anti, tok, PROMPTS, n=4, config=config)
    assert chosen[0] in samples[:4] and chosen[1] in samples[4:]


def test_experts_must_share_a_vocabulary(three_models, tmp_path) -> None:
    tok, base, _, _ = three_models
    from transformers import LlamaConfig, LlamaForCausalLM

    other = LlamaForCausalLM(LlamaConfig(vocab_size=base.config.vocab_size + 5, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2))
    with pytest.raises(ModelError, match="share one vocabulary"):
        LogitArithmetic(base, [(other, 1.0)])


@pytest.mark.xdist_group("world")
def test_decoding_bench_evaluates_every_rule(tmp_path, monkeypatch, capsys) -> None:
    import json

    from test_offline_bench import TINY

    from alignlab.cli import main
    from alignlab.world.build import build_world
    from alignlab.world.datasets import DATASET_SIZES

    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    paths = build_world(tmp_path / "world", seed=0, verbose=False)
    build_model(tmp_path / "base", load_tokenizer(str(paths.tokenizer)), hidden=32, layers=1)
    argv = ["bench", "decoding", "--world", "--world-dir", str(paths.root), "--output", str(tmp_path / "bench"),
            "--set", f"base_model={tmp_path / 'base'}", "--set", "alphas=[0.0,1.0]", "--set", "expert_steps=2",
            "--set", "eval_samples=1", "--set", "max_new_tokens=4", "--set", "rerank_n=2", "--set", "batch_size=4"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "bench" / "results.json").read_text())
    rules = [r["rule"] for r in record["results"]["rows"]]
    assert rules == ["base", "dexperts α=1", "anti-expert re-ranking (best of 2)", "expert alone (trained)"]
    anti = (tmp_path / "bench" / "anti_expert_data.jsonl").read_text().splitlines()
    assert len(anti) == TINY["pairs_train"]  # one rejected answer per training pair
    assert all(r["stderr"]["true_reward"] is not None for r in record["results"]["rows"])
