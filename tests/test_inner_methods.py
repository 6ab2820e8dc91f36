"""The pieces of the non-RL inner experiments: interval bounds, inverse RL, the learned-reward gap, the LM agent."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alignlab.evaluate.interface import LM
from alignlab.inner.envs.coin import LEFT, RIGHT
from alignlab.inner.experiments import relaxed_adversarial as ra
from alignlab.inner.experiments import robust_reward as rr
from alignlab.inner.experiments import zero_shot as zs


def test_interval_bounds_hold_for_every_input_in_the_region():
    torch.manual_seed(0)
    policy = ra.PolicyNet(bits=8, hidden=16)
    low = torch.zeros(5, 8)
    low[torch.arange(5), torch.arange(5)] = 1.0  # region i: bit i on, the rest anything
    high = torch.ones(5, 8)
    bound = policy.unacceptable_margin_bound(low, high)
    every = torch.tensor([[int(b) for b in f"{i:08b}"] for i in range(256)], dtype=torch.float32)
    with torch.no_grad():
        margins = ra.margin(policy, every)
    for i in range(5):
        inside = every[:, i] == 1
        worst = margins[inside].max()
        assert worst <= bound[i] + 1e-5  # sound: no input of the region exceeds its bound
    point = policy.unacceptable_margin_bound(every[:3], every[:3])  # a one-point region: the bound is the margin
    assert torch.allclose(point, margins[:3], atol=1e-5)


def test_ordinary_observations_never_hold_the_trigger_and_triggered_ones_always_do():
    config = ra.RelaxedAdversarialConfig(density=0.9)
    generator = torch.Generator().manual_seed(0)
    assert (ra.ordinary(config, 500, generator)[:, config.trigger].sum(1) < len(config.trigger)).all()
    assert (ra.triggered(config, 50, generator)[:, config.trigger] == 1).all()


def moves_of(act, length=7, levels=32):
    return zs.play(act, length, levels, seed=0)


def test_inverse_rl_recovers_the_goal_of_a_scripted_mover():
    def coin_seeker(agents, coins):
        return np.where(coins > agents, RIGHT, LEFT)

    def always_right(agents, coins):
        return np.full(len(agents), RIGHT)

    seeker = zs.inverse_rl(moves_of(coin_seeker), 7)
    assert seeker["goal"] == "coin" and seeker["coherence"] == 1.0
    runner = zs.inverse_rl(moves_of(always_right), 7)
    assert runner["goal"] == "end" and runner["coherence"] == 1.0
    assert runner["loglik_per_move"]["end"] > runner["loglik_per_move"]["coin"]


class PrefersRight(LM):
    """A fake LM whose log-likelihood prefers " right" and records what it was asked."""

    def __init__(self):
        self.contexts = []

    def loglikelihood(self, requests):
        self.contexts += [context for context, _ in requests]
        return [(-1.0 if word == " right" else -2.0, False) for _, word in requests]

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        raise NotImplementedError


def test_the_language_model_moves_the_way_it_finds_likelier():
    lm = PrefersRight()
    actions = zs.lm_policy(lm, 7)(np.array([2, 4]), np.array([0, 5]))
    assert actions.tolist() == [RIGHT, RIGHT]
    assert "You are at cell 2. A coin is at cell 0." in lm.contexts[0]


class ExactReward(nn.Module):
    """Logit +20 where the agent is on the coin, −20 elsewhere (r̂ = r up to e⁻²⁰)."""

    def forward(self, x):
        half = x.shape[1] // 2
        return (40 * (x[:, :half] * x[:, half:]).sum(1, keepdim=True) - 20)


class EndIsRewarding(nn.Module):
    """Logit +20 where the agent is at the end, whatever the coin (the misgeneralised reward)."""

    def forward(self, x):
        half = x.shape[1] // 2
        return 40 * x[:, half - 1:half] - 20


def test_the_gap_and_the_model_based_agent_follow_the_learned_reward():
    exact, proxy = rr.gaps(ExactReward(), 6), rr.gaps(EndIsRewarding(), 6)
    assert exact["worst_gap"] < 1e-6 and proxy["worst_gap"] > 0.999
    # the proxy is wrong on the 5 states "agent at the end, coin elsewhere" and the 5 "agent on a coin elsewhere"
    assert abs(proxy["mean_gap"] - 10 / 36) < 1e-6
    good, bad = rr.play(ExactReward(), 6, 256, seed=0), rr.play(EndIsRewarding(), 6, 256, seed=0)
    assert good == {"coin_rate": 1.0, "end_rate": 0.0}
    assert bad["coin_rate"] + bad["end_rate"] == 1.0 and 0.2 < bad["end_rate"] < 0.8
