"""Online methods' pieces against hand-computed examples: PPO's reward scaling, Safe RLHF's config rules, RSO's
acceptance rule, the cost-model loss, reward sources, rule-conditioned rewards, the bench's helpers. The RL maths
itself (GAE, clipped losses, KL estimators, group baselines) is tested in test_rl.py."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from alignlab.errors import TrainingError
from alignlab.outer.online.ppo import PPO, PPOConfig
from alignlab.outer.online.rewards import FunctionReward, call_source, rule_prompt
from alignlab.outer.online.safe_ppo import cost_model_loss
from alignlab.outer.online.sampling import (
    acceptance_probability,
    best_of_k,
    pair_extremes,
    rso_accept,
    top_fraction,
)


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


def test_cost_model_loss_hand_value():
    loss = cost_model_loss(torch.tensor([-1.0]), torch.tensor([1.0]), torch.tensor([True]), torch.tensor([False]))
    expected = -F.logsigmoid(torch.tensor(2.0)) - 2 * F.logsigmoid(torch.tensor(1.0))
    torch.testing.assert_close(loss, expected.reshape(1))
    # a safe response with positive cost is penalised more than with negative cost
    hi = cost_model_loss(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([True]), torch.tensor([False]))
    assert float(hi) > float(loss)


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
    from alignlab.experiments.online_bench import length_biased_pairs

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

    from alignlab.experiments.bench_cli import add_commands
    from alignlab.experiments.online_bench import OnlineBenchConfig, overoptimisation_report
    from alignlab.report.html import Report

    drawn = {}
    real_line_plot = Report.line_plot

    def spy(self, title, series, **kwargs):
        drawn.update(series)
        return real_line_plot(self, title, series, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Report, "line_plot", spy)
        page = overoptimisation_report([{"kl": 0.0, "proxy_reward": 0.0, "true_reward": 2.0},
                                        {"kl": 1.0, "proxy_reward": 1.0, "true_reward": 2.5},
                                        {"kl": 4.0, "proxy_reward": 2.0, "true_reward": 1.0}], window=1)
    assert page.count("data:image/png;base64") == 2 and "over-optimisation" in page
    # each reward against √KL (Gao et al.'s axis), in training order
    assert drawn == {"proxy_reward": [(0.0, 0.0), (1.0, 1.0), (2.0, 2.0)],
                     "true_reward": [(0.0, 2.0), (1.0, 2.5), (2.0, 1.0)]}
    from alignlab.experiments.online_bench import moving_average

    assert moving_average([{"kl": float(i)} for i in range(5)], ("kl",), 2) == [{"kl": k} for k in (0.5, 1.5, 2.5, 3.5)]
    from alignlab.cli import parse_args
    from alignlab.experiments.bench_cli import bench_config

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parse_args(parser, ["bench", "online", "--world", "--max-steps", "3", "--overoptimisation",
                               "--methods", "ppo,grpo", "--set", "seed=4"])
    config = bench_config(OnlineBenchConfig, args, ("overoptimisation",))
    assert (config.world, config.max_steps, config.overoptimisation, config.methods, config.seed) == (
        True, 3, True, ["ppo", "grpo"], 4)
    assert parse_args(parser, ["bench", "methods"]).bench_command == "methods"
    with pytest.raises(ValueError, match="no online bench"):
        OnlineBenchConfig(methods=["dpo"])


def test_online_bench_configs_load_and_share_one_sampling_budget(tmp_path):
    from types import SimpleNamespace

    from alignlab.config import load_config
    from alignlab.experiments.online_bench import OnlineBenchConfig, method_keys, online_methods
    from alignlab.registry import get_method

    paths = SimpleNamespace(datasets={"prompts_train": "prompts.jsonl", "sft_train": "sft.jsonl"})
    bench = OnlineBenchConfig(max_steps=20, prompts_per_step=16, group_size=4, overrides={"ppo": ["beta=0.2"]})
    configs = {m: load_config(get_method(m)[0], None, method_keys(m, bench, paths, tmp_path / m, "sft"))
               for m in online_methods()}
    sampled = {
        "ppo": configs["ppo"].prompts_per_step * configs["ppo"].train.max_steps,
        "safe-ppo": configs["safe-ppo"].prompts_per_step * configs["safe-ppo"].train.max_steps,
        **{m: configs[m].prompts_per_step * configs[m].group_size * configs[m].train.max_steps
           for m in ("grpo", "rloo", "reinforce", "fdpg")},
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
