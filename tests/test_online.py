"""Online RL maths against hand-computed examples: GAE, clipped objectives, KL estimators, KL controller,
the Lagrange update, group baselines, RSO's acceptance rule, the cost-model loss, rule-conditioned rewards."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from alignlab.errors import TrainingError
from alignlab.outer.online.grpo import group_advantages
from alignlab.outer.online.ppo import (
    PPO,
    AdaptiveKLController,
    PPOConfig,
    RunningMoments,
    clipped_policy_loss,
    clipped_value_loss,
    gae,
    kl_estimate,
    token_rewards,
    whiten,
)
from alignlab.outer.online.rewards import FunctionReward, call_source, rule_prompt
from alignlab.outer.online.safe_ppo import cost_model_loss, lagrange_update
from alignlab.outer.online.sampling import (
    acceptance_probability,
    best_of_k,
    pair_extremes,
    rso_accept,
    top_fraction,
)


def test_gae_matches_hand_computation():
    # γ = 0.9, λ = 0.8; row 0 is 3 tokens long, row 1 is 2 tokens (its third value must be ignored).
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4], [0.5, 0.2, 9.9]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # Row 0: δ2 = 1 − 0.4 = 0.6; δ1 = 0.9·0.4 − 0.2 = 0.16, A1 = 0.16 + 0.72·0.6 = 0.592;
    #        δ0 = 0.9·0.2 − 0.5 = −0.32, A0 = −0.32 + 0.72·0.592 = 0.10624.
    # Row 1: δ1 = 1 − 0.2 = 0.8 (V after the end is 0); A0 = −0.32 + 0.72·0.8 = 0.256.
    expected = torch.tensor([[0.10624, 0.592, 0.6], [0.256, 0.8, 0.0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, (expected + values) * mask)


def test_token_rewards_put_the_score_on_the_last_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    out = token_rewards(torch.tensor([2.0, -1.0]), kl, mask, beta=0.5)
    torch.testing.assert_close(out, torch.tensor([[-0.05, -0.1, 2.0 - 0.15], [-1.0 - 0.2, 0.0, 0.0]]))


def test_clipped_policy_loss_hand_values_and_gradients():
    old = torch.zeros(4)
    logps = torch.log(torch.tensor([1.5, 0.5, 0.5, 1.1])).requires_grad_()
    adv = torch.tensor([1.0, -1.0, 1.0, 1.0])
    loss, stats = clipped_policy_loss(logps, old, adv, torch.ones(4), clip_coef=0.2)
    # per token max(−A·ρ, −A·clip(ρ)): max(−1.5, −1.2) = −1.2 (clipped); max(0.5, 0.8) = 0.8 (clipped);
    # max(−0.5, −0.8) = −0.5 (pessimistic, unclipped); max(−1.1, −1.1) = −1.1.
    assert float(loss.detach()) == pytest.approx((-1.2 + 0.8 - 0.5 - 1.1) / 4)
    assert float(stats["clipfrac"]) == pytest.approx(0.5)
    loss.backward()
    assert logps.grad[0] == 0 and logps.grad[1] == 0  # clipped tokens get no gradient
    assert float(logps.grad[2]) == pytest.approx(-0.5 / 4)  # d(−A·e^{logp})/dlogp = −A·ρ


def test_clipped_value_loss_takes_the_pessimistic_branch():
    values, old, returns = torch.tensor([2.0, 0.2]), torch.tensor([0.0, 0.0]), torch.tensor([3.0, 0.0])
    loss, stats = clipped_value_loss(values, old, returns, torch.ones(2), clip=0.5)
    # token 0: (2 − 3)² = 1 vs (0.5 − 3)² = 6.25 → 6.25; token 1: 0.04 both → 0.04.
    assert float(loss) == pytest.approx(0.5 * (6.25 + 0.04) / 2)
    assert float(stats["value_error"]) == pytest.approx((1 + 0.04) / 2)
    assert float(stats["value_clipfrac"]) == pytest.approx(0.5)


def test_kl_estimators_exact_values_and_unbiasedness():
    logp, ref = torch.log(torch.tensor(0.5)), torch.log(torch.tensor(0.25))
    assert float(kl_estimate(logp, ref, "k1")) == pytest.approx(math.log(2))
    assert float(kl_estimate(logp, ref, "k2")) == pytest.approx(0.5 * math.log(2) ** 2)
    assert float(kl_estimate(logp, ref, "k3")) == pytest.approx(0.5 - 1 + math.log(2))
    # Sampling y ~ p, the k1 and k3 means estimate KL(p‖q); k3 is never negative.
    g = torch.Generator().manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = float((p * (p / q).log()).sum())
    y = torch.multinomial(p, 200_000, replacement=True, generator=g)
    lp, lq = p.log()[y], q.log()[y]
    assert float(kl_estimate(lp, lq, "k1").mean()) == pytest.approx(exact, abs=0.01)
    assert float(kl_estimate(lp, lq, "k3").mean()) == pytest.approx(exact, abs=0.01)
    assert bool((kl_estimate(lp, lq, "k3") >= 0).all())
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(lp, lq, "k4")


def test_adaptive_kl_controller_follows_ziegler():
    ctl = AdaptiveKLController(beta=0.1, target=6.0, horizon=1000)
    assert ctl.update(12.0, n=100) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at +0.2
    ctl = AdaptiveKLController(beta=0.1, target=6.0, horizon=1000)
    assert ctl.update(6.6, n=100) == pytest.approx(0.1 * (1 + 0.1 * 0.1))
    assert ctl.update(0.0, n=100) < 0.1 * (1 + 0.1 * 0.1)  # below target: β shrinks
    fixed = AdaptiveKLController(beta=0.1)
    assert fixed.update(100.0, n=100) == 0.1


def test_running_moments_match_the_pooled_statistics():
    m = RunningMoments()
    xs = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, -4.0])]
    for x in xs:
        m.update(x)
    allx = torch.cat(xs)
    assert m.mean == pytest.approx(float(allx.mean()), abs=1e-3)
    assert m.std == pytest.approx(float(allx.std(unbiased=False)), rel=1e-3)


def test_ppo_scores_are_centred_and_scaled_by_running_moments():
    scores = torch.tensor([3.0, 4.0, 4.0, 2.0])
    default = PPO(PPOConfig()).scaled(scores)
    assert float(default.mean()) == pytest.approx(0.0, abs=1e-4)  # value targets start near the fresh head's 0
    assert float(default.std(unbiased=False)) == pytest.approx(1.0, rel=1e-3)
    raw = PPO(PPOConfig(scale_rewards=False, center_rewards=False)).scaled(scores)
    assert torch.equal(raw, scores)
    only_scaled = PPO(PPOConfig(center_rewards=False)).scaled(scores)
    assert torch.allclose(only_scaled, scores / scores.std(unbiased=False), rtol=1e-3)


def test_safe_ppo_refuses_score_normalisation():
    from alignlab.outer.online.safe_ppo import SafePPOConfig

    assert not SafePPOConfig().center_rewards  # PKU's rules: raw clipped scores
    for key in ("scale_rewards", "center_rewards"):
        with pytest.raises(ValueError, match="must be false"):
            SafePPOConfig(**{key: True})


def test_whiten_over_masked_positions():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    out = whiten(x, mask)
    valid = out[mask.bool()]
    assert float(valid.mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(valid.pow(2).mean()) == pytest.approx(1.0, abs=1e-4)
    assert out[0, 2] == 0


def test_lagrange_update_rule():
    assert lagrange_update(0.0, mean_cost=1.0, threshold=0.0, lr=0.1, lambda_max=5.0) == pytest.approx(0.1)
    # below the threshold λ shrinks, by lr·(J_c − d)·λ in log space
    assert lagrange_update(math.log(2.0), mean_cost=-0.5, threshold=0.0, lr=0.1, lambda_max=5.0) == pytest.approx(
        math.log(2.0) - 0.1 * 0.5 * 2.0)
    assert lagrange_update(math.log(4.9), mean_cost=100.0, threshold=0.0, lr=0.1, lambda_max=5.0) == pytest.approx(
        math.log(5.0))


def test_cost_model_loss_hand_value():
    loss = cost_model_loss(torch.tensor([-1.0]), torch.tensor([1.0]), torch.tensor([True]), torch.tensor([False]))
    expected = -F.logsigmoid(torch.tensor(2.0)) - 2 * F.logsigmoid(torch.tensor(1.0))
    torch.testing.assert_close(loss, expected.reshape(1))
    # a safe response with positive cost is penalised more than with negative cost
    hi = cost_model_loss(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([True]), torch.tensor([False]))
    assert float(hi) > float(loss)


def test_group_advantages():
    scores = torch.tensor([1.0, 3.0, 5.0, 5.0, 5.0, 5.0])
    rloo = group_advantages(scores, 3, "rloo")
    torch.testing.assert_close(rloo, torch.tensor([1 - 4.0, 3 - 3.0, 5 - 2.0, 0.0, 0.0, 0.0]))
    grpo = group_advantages(scores, 3, "grpo")
    std = float(torch.tensor([1.0, 3.0, 5.0]).std())
    torch.testing.assert_close(grpo, torch.tensor([-2 / (std + 1e-4), 0.0, 2 / (std + 1e-4), 0.0, 0.0, 0.0]))
    torch.testing.assert_close(group_advantages(scores, 3, "reinforce"), scores - scores.mean())
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(scores, 1, "rloo")


def test_group_advantages_match_trl_grpo_formula():
    trl = pytest.importorskip("trl")
    del trl
    # TRL's GRPO: (r − mean_g) / (std_g + 1e-4), std with Bessel's correction, groups consecutive.
    scores = torch.tensor([0.3, 0.9, -1.0, 2.0, 2.5, 0.0, 0.1, 0.2])
    grouped = scores.view(-1, 4)
    ref = ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + 1e-4)).flatten()
    torch.testing.assert_close(group_advantages(scores, 4, "grpo"), ref)


def test_rso_acceptance_rule():
    assert acceptance_probability(1.0, 1.0, 0.5) == 1.0
    assert acceptance_probability(0.0, 1.0, 0.5) == pytest.approx(math.exp(-2))
    # tiny β: only the best remaining is accepted each round → descending order of reward
    assert rso_accept([0.0, 3.0, 1.0, 2.0], 3, 1e-6, random.Random(0)) == [1, 3, 2]
    # huge β: everything is accepted in order
    assert rso_accept([0.0, 3.0, 1.0], 3, 1e6, random.Random(0)) == [0, 1, 2]
    # P(accept the first candidate, reward log(0.5)·β below the best) = 0.5
    beta = 0.7
    rng = random.Random(1)
    hits = sum(rso_accept([beta * math.log(0.5), 0.0], 1, beta, rng) == [0] for _ in range(4000))
    assert hits / 4000 == pytest.approx(0.5, abs=0.03)
    assert best_of_k([1.0, 3.0, 2.0, 0.0], 2) == [1, 2]
    # RSO pairs the accepted extremes; ties (no preference) are dropped
    assert pair_extremes([0, 1, 2, 3], [2.0, 2.0, 2.0, 1.0]) == [(0, 3)]
    assert pair_extremes([0, 1, 2, 3, 4], [5.0, 1.0, 4.0, 2.0, 3.0]) == [(0, 1), (2, 3)]
    assert top_fraction([1.0, 3.0, 2.0, 0.0, 5.0], 0.4) == [4, 1]


def test_call_source_names_the_prompt_on_nan_and_on_exceptions():
    prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(3)]
    nan = FunctionReward(lambda p, c: [0.0, float("nan"), 1.0])
    with pytest.raises(TrainingError, match="prompt index 7"):
        call_source(nan, prompts, ["a", "b", "c"], prompt_index=[4, 7, 9])

    def boom(p, c):
        raise KeyError("no such key")

    with pytest.raises(TrainingError, match="raised KeyError.*4, 7, 9"):
        call_source(FunctionReward(boom), prompts, ["a", "b", "c"], prompt_index=[4, 7, 9])
    with pytest.raises(TrainingError, match="2 scores for 3"):
        call_source(FunctionReward(lambda p, c: [1.0, 2.0]), prompts, ["a", "b", "c"])
    seen = []
    got = call_source(FunctionReward(lambda p, c: seen.append((p, c)) or [1.0] * len(c)), prompts, ["a", "b", "c"])
    assert seen == [(["q0", "q1", "q2"], ["a", "b", "c"])] and got.tolist() == [1.0, 1.0, 1.0]


def test_rule_conditioned_reward_scores_each_rule_with_one_model(tiny_model_dir):
    from alignlab.core.models import load_reward_model, load_tokenizer
    from alignlab.outer.online.rewards import RuleConditionedReward

    tok = load_tokenizer(str(tiny_model_dir))
    model = load_reward_model(str(tiny_model_dir))
    model.config.pad_token_id = tok.pad_token_id
    calls = []
    model.register_forward_hook(lambda mod, args, kwargs_out: calls.append(1))
    rules = ["Do not insult the user.", "Do not give medical advice.", "Be honest."]
    source = RuleConditionedReward(model, tok, rules, aggregate="min")
    prompts = [[{"role": "user", "content": "Hello!"}]] * 2
    table = source.per_rule(prompts, ["Hi there.", "Go away."])
    assert len(table) == 3 and all(len(row) == 2 for row in table)
    assert len({round(row[0], 6) for row in table}) > 1  # the rule text changes the score
    assert source(prompts, ["Hi there.", "Go away."]) == [min(col) for col in zip(*table)]
    assert rule_prompt("R", [{"role": "system", "content": "old"}, {"role": "user", "content": "x"}]) == [
        {"role": "system", "content": "Rule: R"}, {"role": "user", "content": "x"}]
    assert len(calls) >= 3


def test_length_biased_pairs_prefer_longer_answers():
    from alignlab.outer.online.bench import length_biased_pairs

    unbiased = length_biased_pairs(0, "small", 300, 0.0)
    biased = length_biased_pairs(0, "small", 300, 0.5)

    def longer_wins(rows):
        return sum(len(r["chosen"][0]["content"]) > len(r["rejected"][0]["content"]) for r in rows) / len(rows)

    assert longer_wins(biased) > longer_wins(unbiased) + 0.1
    # the sampling seed changes the candidates, never the world the prompts come from
    from alignlab.world.families import parse_prompt

    reseeded = length_biased_pairs(0, "small", 50, 0.05, seed=1)
    assert reseeded != length_biased_pairs(0, "small", 50, 0.05, seed=0)
    assert all(parse_prompt(r["prompt"][-1]["content"]) for r in reseeded)


def test_overoptimisation_plot_and_bench_cli_registration():
    import argparse

    from alignlab.outer.online.bench import OnlineBenchConfig, svg_plot
    from alignlab.outer.online.cli import add_commands

    svg = svg_plot([{"kl": 0.0, "proxy_reward": 0.0, "true_reward": 2.0},
                    {"kl": 1.0, "proxy_reward": 1.0, "true_reward": 2.5},
                    {"kl": 2.0, "proxy_reward": 2.0, "true_reward": 1.0}], window=1)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "KL to the reference" in svg
    from alignlab.outer.online.bench import moving_average

    assert moving_average([{"kl": float(i)} for i in range(5)], ("kl",), 2) == [{"kl": k} for k in (0.5, 1.5, 2.5, 3.5)]
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    other = sub.add_parser("bench").add_subparsers(dest="bench_command")
    other.add_parser("methods")  # another area's bench command stays
    add_commands(sub)
    args = parser.parse_args(["bench", "online", "--world", "--max-steps", "3", "--overoptimisation"])
    assert args.world and args.max_steps == 3 and args.overoptimisation and callable(args.handler)
    assert parser.parse_args(["bench", "methods"]).bench_command == "methods"
    with pytest.raises(ValueError, match="no online bench"):
        OnlineBenchConfig(methods=["dpo"])


def test_online_bench_configs_load_and_share_one_sampling_budget(tmp_path):
    from types import SimpleNamespace

    from alignlab.config import load_config
    from alignlab.outer.online.bench import ONLINE_METHODS, OnlineBenchConfig, method_keys
    from alignlab.registry import get_method

    paths = SimpleNamespace(datasets={"prompts_train": "prompts.jsonl", "sft_train": "sft.jsonl"})
    bench = OnlineBenchConfig(max_steps=20, prompts_per_step=16, group_size=4, overrides={"ppo": ["beta=0.2"]})
    configs = {m: load_config(get_method(m)[0], None, method_keys(m, bench, paths, tmp_path / m, "sft"))
               for m in ONLINE_METHODS}
    sampled = {
        "ppo": configs["ppo"].prompts_per_step * configs["ppo"].train.max_steps,
        "safe-ppo": configs["safe-ppo"].prompts_per_step * configs["safe-ppo"].train.max_steps,
        **{m: configs[m].prompts_per_step * configs[m].group_size * configs[m].train.max_steps
           for m in ("grpo", "rloo", "reinforce")},
        "raft": configs["raft"].iterations * configs["raft"].prompts_per_iteration * configs["raft"].samples_per_prompt,
    }
    assert set(sampled.values()) == {16 * 20}, sampled
    assert configs["ppo"].beta == 0.2 and configs["ppo"].model.name_or_path == "sft"
    assert configs["safe-ppo"].cost.world_dimension == "cost" and configs["safe-ppo"].reward.world_dimension == "helpfulness"
    assert all(c.output == str(tmp_path / m) for m, c in configs.items())
    assert {m: c.train.lr for m, c in configs.items() if c.train.lr == bench.lr}.keys() == {"ppo", "safe-ppo"}
    assert configs["grpo"].train.lr == configs["spin"].train.lr == bench.lr_without_critic
    assert configs["rso"].data.limit * configs["rso"].num_candidates == 16 * 20


def test_both_bench_commands_need_the_world(capsys):
    from alignlab.cli import main

    for command in ("methods", "online"):
        assert main(["bench", command, "--max-steps", "3"]) != 0
        assert f"alignlab bench {command} needs --world" in capsys.readouterr().err


def test_entropy_from_logits_row_by_row_equals_the_batched_formula():
    from alignlab.outer.online.rollout import entropy_from_logits

    torch.manual_seed(0)
    logits = (torch.randn(3, 5, 50) * 4).bfloat16()
    z = logits.float()
    naive = -(z.softmax(-1) * z.log_softmax(-1)).sum(-1)  # −Σ p log p over the whole batch at once
    torch.testing.assert_close(entropy_from_logits(logits), naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy_from_logits(logits[0]), naive[0], atol=1e-5, rtol=1e-5)  # 2D input
