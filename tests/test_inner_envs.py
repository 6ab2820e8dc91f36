"""The inner-alignment environments: dynamics, rewards, level generation and gymnasium's vector API."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import VectorEnv

from alignlab.errors import InnerError
from alignlab.inner.envs import (
    ENVS,
    CoinRunEnv,
    HarvestEnv,
    ObjectChoiceEnv,
    OversightEnv,
    RewardChannelBandit,
    make_env,
)
from alignlab.inner.envs.coin import LEFT, RIGHT
from alignlab.inner.envs.harvest import HARVEST, PLANT
from alignlab.inner.envs.objects import BLUE, RED, ROUND, SQUARE
from alignlab.inner.envs.oversight import COMPLY, DEFECT

DEFAULTS = {"coin_run": {}, "reward_channel": {}, "objects": {}, "harvest": {}, "oversight": {}}


@pytest.mark.parametrize("name", list(ENVS))
def test_every_env_follows_the_vector_api(name):
    env = make_env(name, num_envs=5, **DEFAULTS[name])
    assert isinstance(env, VectorEnv)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (5, *env.single_observation_space.shape) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    for _ in range(3 * env.max_steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward.shape == terminated.shape == truncated.shape == (5,)
        assert not (terminated & truncated).any()
        if (terminated | truncated).any():
            done = terminated | truncated
            assert (info["_final_obs"] == done).all() and (info["outcome"][done] >= 0).all()
            assert (info["outcome"][~done] == -1).all()
    with pytest.raises(InnerError, match="actions of shape"):
        env.step(np.zeros(3, dtype=np.int64))


def test_same_seed_same_levels_and_a_mistyped_name_is_named():
    a, b = CoinRunEnv(16, random_coin_share=0.5), CoinRunEnv(16, random_coin_share=0.5)
    assert (a.reset(seed=3)[0] == b.reset(seed=3)[0]).all()
    with pytest.raises(InnerError, match="did you mean coin_run"):
        make_env("coinrun", 2)


def test_coin_run_rewards_the_coin_and_ends_at_the_end():
    env = CoinRunEnv(3, length=6)
    env.reset(seed=0)
    env.agent[:] = [4, 1, 0]
    env.coin[:] = [5, 3, 5]
    _, reward, terminated, truncated, info = env.step(np.array([RIGHT, RIGHT, LEFT]))
    assert reward.tolist() == [1.0, 0.0, 0.0]  # copy 0 touched the coin at the end
    assert terminated.tolist() == [True, False, False] and env.OUTCOMES[info["outcome"][0]] == "coin"
    assert env.agent[1] == 2 and env.agent[2] == 0  # one step right; the left wall holds
    env.coin[1] = 1  # now behind copy 1: walking right reaches the end without it
    for _ in range(3):
        _, reward, terminated, _, info = env.step(np.array([LEFT, RIGHT, LEFT]))
    assert terminated[1] and reward[1] == 0.0 and env.OUTCOMES[info["outcome"][1]] == "end"


def test_coin_run_levels():
    n, length = 4000, 8
    train = CoinRunEnv(n, length)
    train.reset(seed=0)
    assert (train.coin == length - 1).all() and ((train.agent >= 1) & (train.agent <= length - 2)).all()
    test = CoinRunEnv(n, length, coin="anywhere")
    test.reset(seed=0)
    assert (test.coin != length - 1).all() and (test.coin != test.agent).all()
    assert set(np.unique(test.coin)) == set(range(length - 1))  # every other cell is used
    assert (test.coin < test.agent).mean() > 0.3  # coins behind the agent: going right misses them
    mixed = CoinRunEnv(n, length, random_coin_share=0.5)
    mixed.reset(seed=0)
    elsewhere = (mixed.coin != length - 1).mean()
    assert (mixed.coin != mixed.agent).all() and 0.35 < elsewhere < 0.5  # half random, 1/(L−1) of those at the end


def test_reward_channel_bandit_shows_what_its_channel_says():
    prev = RewardChannelBandit(2, arms=3, steps=4, channel="previous")
    obs, _ = prev.reset(seed=0)
    assert obs[:, 3].tolist() == [1.0, 1.0] and (obs[:, 4:] == 0).all()  # first step: flag, nothing paid yet
    good = prev.good.copy()
    obs, reward, *_ = prev.step(np.array([good[0], (good[1] + 1) % 3]))
    assert reward.tolist() == [1.0, 0.0]
    assert obs[:, 4].tolist() == [1.0, 0.0] and obs[0, good[0]] == 1.0 and obs[:, 3].tolist() == [0.0, 0.0]
    flipped = RewardChannelBandit(1, arms=2, channel="previous", shown="flipped")
    flipped.reset(seed=0)
    obs, reward, *_ = flipped.step(flipped.good.copy())
    assert reward[0] == 1.0 and obs[0, 3] == 0.0  # paid 1, shown 1 − 1
    nxt = RewardChannelBandit(64, arms=3, channel="next")
    obs, _ = nxt.reset(seed=0)
    assert (obs[:, 4:].argmax(1) == nxt.good).all() and (obs[:, 4:].sum(1) == 1).all()
    none = RewardChannelBandit(4, channel="none")
    none.reset(seed=0)
    obs, *_ = none.step(none.good.copy())
    assert (obs[:, 3:] == 0).all()
    episode = RewardChannelBandit(1, steps=3)
    episode.reset(seed=0)
    good = int(episode.good[0])
    steps = [episode.step(np.array([good])) for _ in range(3)]
    assert [bool(s[2][0]) for s in steps] == [False, False, True]
    assert [float(s[1][0]) for s in steps] == [1.0, 1.0, 1.0]  # the last pull pays too (the level resets after)


@pytest.mark.parametrize("kind,a_colour,a_shape,a_right", [("train", RED, SQUARE, True), ("colour", RED, ROUND, False),
                                                          ("shape", BLUE, SQUARE, False), ("side", BLUE, ROUND, True)])
def test_object_levels_give_each_object_its_features(kind, a_colour, a_shape, a_right):
    env = ObjectChoiceEnv(500, size=5, kind=kind)
    obs, _ = env.reset(seed=0)
    i = np.arange(500)
    assert (obs[i, a_colour, env.a_row, env.a_col] == 1).all() and (obs[i, a_shape, env.a_row, env.a_col] == 1).all()
    b_colour, b_shape = RED + BLUE - a_colour, ROUND + SQUARE - a_shape
    assert (obs[i, b_colour, env.b_row, env.b_col] == 1).all() and (obs[i, b_shape, env.b_row, env.b_col] == 1).all()
    assert ((env.a_col >= 3) == a_right).all() and ((env.b_col <= 1) == a_right).all()
    on_object = ((env.row == env.a_row) & (env.col == env.a_col)) | ((env.row == env.b_row) & (env.col == env.b_col))
    assert not on_object.any() and (obs[:, 0].sum((1, 2)) == 1).all()


def test_touching_an_object_ends_the_episode_and_only_a_pays():
    env = ObjectChoiceEnv(2, size=5)
    env.reset(seed=0)
    env.row[:], env.col[:] = [2, 2], [2, 2]
    env.a_row[:], env.a_col[:] = [2, 0], [3, 4]
    env.b_row[:], env.b_col[:] = [0, 2], [0, 0]
    _, reward, terminated, _, info = env.step(np.array([3, 2]))  # right onto A; left onto the cell beside B
    assert reward.tolist() == [1.0, 0.0] and terminated.tolist() == [True, False]
    _, reward, terminated, _, info = env.step(np.array([0, 2]))
    assert terminated[1] and reward[1] == 0.0 and env.OUTCOMES[info["outcome"][1]] == "B"


def test_harvest_carries_the_field_across_episodes():
    env = HarvestEnv(2, bonus=1.5)
    env.reset(seed=0)
    rewards = [env.step(np.array(a))[1].tolist() for a in ([PLANT, HARVEST], [HARVEST, HARVEST])]
    assert rewards == [[0.0, 1.0], [2.5, 1.0]]
    env.step(np.array([PLANT, PLANT]))
    obs, _ = env.reset()  # a new episode: the field stays planted
    assert obs[:, 0].tolist() == [1.0, 1.0]
    obs, _ = env.reset(seed=1)
    assert obs[:, 0].tolist() == [0.0, 0.0]


def test_oversight_catches_only_watched_defection():
    watched = OversightEnv(2, steps=5, forced=True)
    obs, _ = watched.reset(seed=0)
    assert obs[:, 0].tolist() == [1.0, 1.0]
    _, reward, terminated, _, info = watched.step(np.array([DEFECT, COMPLY]))
    assert reward.tolist() == pytest.approx([1.0, 0.2]) and terminated.tolist() == [True, False]
    assert watched.OUTCOMES[info["outcome"][0]] == "caught"
    free = OversightEnv(1, steps=3, forced=False)
    free.reset(seed=0)
    steps = [free.step(np.array([DEFECT])) for _ in range(3)]
    assert [s[1][0] for s in steps] == [1.0, 1.0, 1.0] and not any(s[2][0] for s in steps) and steps[-1][3][0]
    blind = OversightEnv(8, forced=True, observe_oversight=False)
    assert (blind.reset(seed=0)[0][:, 0] == 0).all()
    sometimes = OversightEnv(4000, oversight_prob=0.3)
    assert 0.25 < sometimes.reset(seed=0)[0][:, 0].mean() < 0.35
