"""SENSEI: the reward-distributor critic and the steering actor, two heads on a frozen tiny LM."""

from __future__ import annotations

import pytest
import torch
from conftest import build_model, build_tokenizer, write_jsonl

from alignlab.core.data import DataConfig
from alignlab.core.generation import GenerationConfig, encode_prompts, generate
from alignlab.core.models import ModelConfig
from alignlab.core.trainer import TrainConfig
from alignlab.errors import ModelError
from alignlab.outer.sensei import (
    SenseiConfig,
    actor_loss,
    distributor_loss,
    load_sensei,
    optimal_actor_logits,
    top_k_mask,
    train_sensei,
)

QUESTIONS = ["Hello!", "Two plus two?", "Thanks!", "What is the capital of Zorbia?", "Reverse cat", "Hi there",
             "Help me", "Good day"]
PROMPTS = [[{"role": "user", "content": q}] for q in QUESTIONS]


def count_e(prompts, completions):
    """The simple target: one point per letter 'e' written (a reward that is exactly a sum of step rewards)."""
    return [float(c.count("e")) for c in completions]


def test_distributor_loss_is_the_squared_gap_between_summed_step_rewards_and_the_judgement() -> None:
    steps = torch.tensor([[0.5, 0.25, 9.0], [1.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # the 9.0 sits on padding
    assert distributor_loss(steps, mask, torch.tensor([1.0, 0.5])).tolist() == [0.0625, 0.25]


def test_the_actor_loss_is_stationary_at_softmax_z_times_exp_q_over_beta() -> None:
    """At z + q/β the gradient of −E_π q + β KL(π‖softmax z) vanishes (the arithmetic's minimiser), elsewhere not."""
    gen = torch.Generator().manual_seed(0)
    z, q, beta = torch.randn(1, 1, 7, generator=gen), torch.randn(1, 1, 7, generator=gen), 0.3
    mask = torch.ones(1, 1)
    best = optimal_actor_logits(z, q, beta).requires_grad_(True)
    actor_loss(best, z, q, mask, beta).sum().backward()
    assert best.grad.abs().max() < 1e-5
    other = z.clone().requires_grad_(True)
    actor_loss(other, z, q, mask, beta).sum().backward()
    assert other.grad.abs().max() > 1e-2
    assert actor_loss(best, z, q, mask, beta) < actor_loss(z, z, q, mask, beta)


def test_the_actor_chooses_among_the_lm_top_k_with_finite_gradients() -> None:
    """Restricted to the LM's k best tokens, the loss ignores the rest (however high their q) and stays finite."""
    z = torch.tensor([[[3.0, 2.0, 1.0, 0.0]]])
    q = torch.tensor([[[0.0, 1.0, 0.0, 100.0]]])
    candidates = top_k_mask(z, 2)
    assert torch.isinf(candidates[0, 0, 2:]).all() and torch.equal(candidates[0, 0, :2], z[0, 0, :2])
    delta = torch.zeros_like(z, requires_grad=True)
    loss = actor_loss(candidates + delta, candidates, q, torch.ones(1, 1), 0.5)
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(delta.grad).all()
    best = optimal_actor_logits(candidates, q, 0.5)
    assert int(best.argmax()) == 1  # the 100 outside the candidates is out of reach


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SENSEI heads trained on a tiny random LM for the target and for its negation."""
    root = tmp_path_factory.mktemp("sensei")
    tok = build_tokenizer(root / "lm")
    build_model(root / "lm", tok)
    write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    runs = {}
    for sign in (1.0, -1.0):
        cfg = SenseiConfig(model=ModelConfig(str(root / "lm")), data=DataConfig(path=str(root / "prompts.jsonl")),
                           output=str(root / f"sign{sign:+.0f}"), samples_per_prompt=32, beta=0.1,
                           generation=GenerationConfig(max_new_tokens=8, seed=0),
                           train=TrainConfig(lr=2e-2, batch_size=16, max_steps=150, progress=False))
        train_sensei(cfg, reward=lambda ps, cs, s=sign: [s * x for x in count_e(ps, cs)])
        runs[sign] = load_sensei(cfg.output)
    return tok, runs


def test_the_critic_learns_which_steps_earn_the_reward(trained) -> None:
    """At the steps of the LM's own answers (those it was trained on), the critic's reward for the token written
    tracks the number of 'e's in it (the true step reward); the squared error of the sums was never told which."""
    tok, runs = trained
    sensei = runs[1.0]
    out = generate(sensei.lm, tok, [p for p in PROMPTS for _ in range(32)], GenerationConfig(max_new_tokens=8, seed=0))
    estimated, true = [], []
    for prompt_ids, completion in zip(out.prompt_ids, out.completion_ids):
        hidden, _ = sensei.states(torch.tensor([prompt_ids + completion]))
        q = sensei.step_rewards(hidden[0, len(prompt_ids) - 1:-1]).detach()  # [T, vocab]: the state before each token
        estimated += q.gather(-1, torch.tensor(completion)[:, None]).squeeze(-1).tolist()
        true += [tok.decode([t], skip_special_tokens=True).count("e") for t in completion]
    estimated, true = torch.tensor(estimated), torch.tensor(true, dtype=torch.float32)
    assert torch.corrcoef(torch.stack([estimated, true]))[0, 1] > 0.35
    assert estimated[true > 0].mean() - estimated[true == 0].mean() > 0.15


def test_steering_raises_the_target_and_the_negated_reward_lowers_it(trained) -> None:
    tok, runs = trained
    config = GenerationConfig(max_new_tokens=8, seed=1)
    prompts = PROMPTS * 6

    def mean_target(model) -> float:
        texts = generate(model, tok, prompts, config).texts
        return sum(count_e(prompts, texts)) / len(texts)

    assert mean_target(runs[1.0].lm) == mean_target(runs[1.0].with_strength(0.0, top_k=0))  # the LM, draw for draw
    truncated = mean_target(runs[1.0].with_strength(0.0))  # the LM cut to the same top 10: the control
    assert mean_target(runs[1.0]) > truncated + 0.3
    assert mean_target(runs[-1.0]) < truncated


def test_strength_zero_is_the_lm_cut_to_its_top_k(trained) -> None:
    tok, runs = trained
    control = runs[1.0].with_strength(0.0)
    ids = torch.tensor(encode_prompts(tok, PROMPTS[:1]))
    _, z = control.states(ids, keep=1)
    logits = control(input_ids=ids, logits_to_keep=1).logits[0, -1]
    kept = torch.topk(z[0, -1], 10).indices
    assert torch.equal(logits[kept], z[0, -1, kept].float())
    assert (logits.max() - logits.topk(11).values[-1]) > 1e3  # the 11th token and beyond are never sampled


def test_greedy_steered_tokens_are_the_argmax_of_z_plus_strength_delta_through_the_cache(trained) -> None:
    tok, runs = trained
    steered = runs[1.0].with_strength(0.7)
    out = generate(steered, tok, PROMPTS[:2] * 2, GenerationConfig(max_new_tokens=5, temperature=0.0))
    for prompt_ids, completion in zip(out.prompt_ids, out.completion_ids):
        ids = list(prompt_ids)
        for token in completion:
            hidden, z = steered.states(torch.tensor([ids]), keep=1)
            assert token == int((top_k_mask(z[0, -1], 10) + 0.7 * steered.steering(hidden[0, -1])).argmax())
            ids.append(token)


def test_a_directory_without_heads_is_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="no SENSEI heads"):
        load_sensei(tmp_path)


def test_alignlab_train_sensei_trains_the_heads_from_the_command_line(tmp_path, tiny_model_dir) -> None:
    from alignlab.cli import main

    write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    code = main(["train", "sensei", "--model", str(tiny_model_dir), "--data", str(tmp_path / "prompts.jsonl"),
                 "--output", str(tmp_path / "run"), "--set", "reward.source=function",
                 "--set", "reward.function=test_outer_sensei:count_e", "--set", "samples_per_prompt=2",
                 "--set", "generation.max_new_tokens=6", "--set", "train.max_steps=3", "--set", "strength=0.5",
                 "--set", "train.progress=false"])
    assert code == 0
    sensei = load_sensei(tmp_path / "run")
    assert sensei.strength == 0.5 and sensei.top_k == 10
    assert sensei.critic.bias.abs().sum() > 0 and sensei.actor.proj.weight.abs().sum() > 0
