"""The inner-alignment agents: policies are causal and their rollout steps match their batch forward; PPO's
rollouts cut and bootstrap episodes as documented; PPO learns simple games; population-based training selects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignlab.core.rl import gae
from alignlab.errors import InnerError
from alignlab.inner.agents import PPOConfig, collect, evaluate, make_policy, train_ppo
from alignlab.inner.agents.pbt import train_population
from alignlab.inner.agents.policies import Policy
from alignlab.inner.agents.ppo import StreamCollector
from alignlab.inner.envs import CoinRunEnv, HarvestEnv, OversightEnv, RewardChannelBandit
from alignlab.inner.envs.coin import RIGHT
from alignlab.inner.experiments.deceptive_conditions import defect_rate


@pytest.mark.parametrize("name,shape", [("mlp", (5,)), ("cnn", (2, 3, 4)), ("lstm", (5,)), ("transformer", (5,))])
def test_rollout_steps_match_the_batch_forward_and_never_see_the_future(name, shape):
    torch.manual_seed(0)
    policy = make_policy(name, shape, 3, hidden=16, max_len=6)
    obs = torch.randn(4, 6, *shape)
    logits, values = policy(obs)
    state, stepped = policy.initial_state(4), []
    for t in range(6):
        step_logits, step_value, state = policy.step(obs[:, t], state)
        stepped.append((step_logits, step_value))
    # the same products summed in another order: fp32 rounding, far below any learned difference
    assert torch.allclose(torch.stack([s[0] for s in stepped], 1), logits, atol=1e-5)
    assert torch.allclose(torch.stack([s[1] for s in stepped], 1), values, atol=1e-5)
    changed = obs.clone()
    changed[:, 4:] += 1.0
    later_logits, _ = policy(changed)
    assert torch.allclose(later_logits[:, :4], logits[:, :4], atol=1e-6)  # the past is unchanged
    assert not torch.allclose(later_logits[:, 4:], logits[:, 4:])


def test_unknown_policy_is_named():
    with pytest.raises(InnerError, match="did you mean lstm"):
        make_policy("lstn", (3,), 2)


class GoRight(Policy):
    """Always steps right (a scripted agent that learned "go to the end")."""

    def forward(self, obs):
        logits = torch.zeros(*obs.shape[:2], 2)
        logits[..., RIGHT] = 50.0
        return logits, torch.zeros(obs.shape[:2])


def test_collect_keeps_each_episode_to_its_end():
    env = CoinRunEnv(64, length=6, coin="anywhere")
    batch = collect(GoRight(), env, greedy=True)
    lengths = batch.mask.sum(1)
    assert (batch.mask[:, 1:] <= batch.mask[:, :-1]).all()  # a mask is ones, then zeros
    assert set(batch.outcome.tolist()) == {1, 2}  # the coin when it lies ahead, else the end
    coin_ahead = batch.outcome == 1
    assert (batch.returns[torch.from_numpy(coin_ahead)] == 1).all() and (batch.returns[torch.from_numpy(~coin_ahead)] == 0).all()
    start = batch.obs[:, 0, 0, 0].argmax(-1)  # the agent's cell at the start
    assert (lengths == torch.where(torch.from_numpy(coin_ahead), batch.obs[:, 0, 1, 0].argmax(-1) - start, 5 - start)).all()


def test_go_right_misgeneralises_exactly_on_coins_behind_it():
    train = evaluate(GoRight(), CoinRunEnv(32, length=6), 256, greedy=True)
    test = evaluate(GoRight(), CoinRunEnv(32, length=6, coin="anywhere"), 256, greedy=True)
    assert train["outcomes"]["coin"] == 1.0 and train["mean_return"] == 1.0
    assert 0.2 < test["outcomes"]["end"] < 0.8 and test["outcomes"]["coin"] + test["outcomes"]["end"] == 1.0


def test_stream_rollouts_cut_episodes_and_bootstrap_the_cut_ones():
    class RightValuedTwo(GoRight):
        def forward(self, obs):
            logits, values = super().forward(obs)
            return logits, values + 2.0

    env = CoinRunEnv(8, length=8)
    stream = StreamCollector(env)
    batch = stream(RightValuedTwo(), n_steps=5, gamma=0.9)
    assert int(batch.mask.sum()) == 8 * 5  # every step is in exactly one row
    assert (batch.mask[:, 1:] <= batch.mask[:, :-1]).all() and (batch.mask[:, 0] == 1).all()
    ended, cut = batch.outcome >= 0, batch.outcome < 0
    assert 1 <= cut.sum() <= 8 and (batch.outcome[ended] == 1).all()  # going right always meets the coin at the end
    # each cut row's last reward is its true reward (0: no coin yet) plus γ·V(next observation) = 0.9 · 2
    last = batch.mask.sum(1).long() - 1
    rows = torch.from_numpy(np.flatnonzero(cut))
    assert torch.allclose(batch.rewards[rows, last[rows]], torch.tensor(1.8))
    ended_rows = torch.from_numpy(np.flatnonzero(ended))
    assert (batch.rewards[ended_rows, last[ended_rows]] == 1.0).all()
    # with it, the core's GAE gives the bootstrapped TD error r + γV' − V at the cut
    advantages, _ = gae(batch.rewards, batch.values, batch.mask, 0.9, 0.95)
    assert torch.allclose(advantages[rows, last[rows]], torch.tensor(1.8 - 2.0))
    # the next rollout carries on from the observation this one stopped at (no reset); row 0 is copy 0's first
    before = torch.from_numpy(stream.obs.copy())
    again = stream(RightValuedTwo(), n_steps=5, gamma=0.9)
    assert torch.equal(again.obs[0, 0], before[0])


def test_ppo_learns_to_get_the_coin():
    env = CoinRunEnv(16, length=6)
    before = evaluate(make_policy("mlp", env.single_observation_space.shape, 2, hidden=16), env, 256, seed=1)
    trained = train_ppo(env, PPOConfig(hidden=16, total_steps=2_000, progress=False))
    after = evaluate(trained.policy, env, 256, seed=1)
    assert before["mean_return"] < 0.8 and after["mean_return"] > 0.95


def test_recurrent_ppo_learns_to_use_the_reward_it_is_shown():
    env = RewardChannelBandit(32, arms=2, steps=6, channel="previous")
    trained = train_ppo(env, PPOConfig(policy="lstm", hidden=16, total_steps=6_000, gamma=0.9, progress=False))
    result = evaluate(trained.policy, env, 256, seed=1)
    # chance is 3 of 6; win-stay/lose-shift earns at least 5 of 6 (at most one miss, on the first pull)
    assert result["mean_return"] > 4.3


def test_an_agent_that_defects_only_when_unwatched_has_a_gap_of_one():
    class Deceiver(Policy):
        def forward(self, obs):
            overseen = obs[..., 0]
            return torch.stack([overseen * 50, (1 - overseen) * 50], -1), torch.zeros(obs.shape[:2])

    assert defect_rate(Deceiver(), OversightEnv(8, forced=True), 32, seed=0) == 0.0
    assert defect_rate(Deceiver(), OversightEnv(8, forced=False), 32, seed=0) == 1.0


def test_population_based_training_copies_winners_and_plain_training_does_not():
    config = PPOConfig(hidden=8, total_steps=512, steps_per_update=64, progress=False)
    plain = train_population(lambda: HarvestEnv(8), config, members=2, interval=128, exploit=False)
    pbt = train_population(lambda: HarvestEnv(8), config, members=2, interval=128, exploit=True)
    assert plain.copies == 0 and pbt.copies == 3  # one loser replaced at each of the 3 selections
    assert len(pbt.fitness_history) == 4 and plain.lrs != pbt.lrs
