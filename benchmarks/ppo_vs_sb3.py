"""alignlab PPO vs Stable-Baselines3 PPO: same environment, same network, same settings, in one run.

The environment is alignlab's batched :class:`~alignlab.inner.envs.ObjectChoiceEnv` (a 5×5 grid, two objects,
reach the rewarded one), given to SB3 through a thin ``VecEnv`` adapter so both sides step the same numpy
game. Both train SB3's default actor-critic (separate 64-64 tanh policy and value networks, orthogonal
initialisation) with the same PPO settings: ``num_envs`` copies, rollouts of ``max_steps`` steps per copy
(SB3's ``n_steps``; alignlab collects one episode per copy, at most that long), ``minibatches`` minibatches,
``update_epochs`` epochs, the same learning rate, γ, λ, clip range, entropy and value coefficients and
gradient-norm clip, for ``total_steps`` environment steps. Each round trains both sides from the same seed
(alternating, so load from other processes hits both alike), then plays ``eval_episodes`` episodes with each
trained policy (sampling actions) on the same test levels.

Speed is environment steps per second of training (rollouts and updates); the ratio printed is the median
of the per-round ratios. Before training, each of alignlab's inner-alignment environments is stepped alone with
random actions (``env_copies`` copies at once) to record its raw environment steps per second. Final return is the mean over rounds with its 95% interval (Student t), and the
difference alignlab − SB3 with its interval, which should contain 0 ("the same return within noise").

    python benchmarks/ppo_vs_sb3.py [--total-steps 30000] [--rounds 3] [--threads 1]
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from common import SpeedConfig, bench_parser, parse_bench, report, start, write_result


@dataclass
class PPOBench(SpeedConfig):
    """alignlab PPO vs Stable-Baselines3 PPO on the same environment and settings."""

    rounds: int = 3
    """rounds (seeds); each trains both sides once"""
    precision: Literal["auto", "bf16", "no"] = "no"
    """both sides fp32: SB3 has no mixed-precision path, and at width 64 bf16 autocast costs more than it saves"""
    total_steps: int = 30_000
    """environment steps each side trains for"""
    num_envs: int = 16
    """copies of the environment stepped together (SB3's n_envs)"""
    size: int = 5
    """grid side of the environment"""
    lr: float = 1e-3
    """Adam learning rate, both sides"""
    update_epochs: int = 4
    """epochs per batch (SB3's n_epochs)"""
    minibatches: int = 4
    """minibatches per epoch (SB3's batch_size = num_envs × n_steps / minibatches)"""
    eval_episodes: int = 1024
    """test episodes per trained policy"""
    env_copies: int = 64
    """copies per environment when measuring raw environment speed"""


def sb3_vec_env(env):
    """Stable-Baselines3's VecEnv interface over an alignlab BatchedEnv (the same numpy game, no copies)."""
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv

    class Adapter(VecEnv):
        def __init__(self):
            super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)
            self.actions = None

        def reset(self):
            return env.reset()[0]

        def step_async(self, actions):
            self.actions = actions

        def step_wait(self):
            obs, reward, terminated, truncated, info = env.step(self.actions)
            infos = [{} for _ in range(env.num_envs)]
            for i in np.flatnonzero(terminated | truncated):
                infos[i] = {"terminal_observation": info["final_obs"][i], "TimeLimit.truncated": bool(truncated[i])}
            return obs, reward, terminated | truncated, infos

        def close(self):
            pass

        def get_attr(self, attr_name, indices=None):
            return [getattr(env, attr_name)] * env.num_envs

        def set_attr(self, attr_name, value, indices=None):
            setattr(env, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(env, method_name)(*args, **kwargs)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * env.num_envs

    return Adapter()


def play(act, env, episodes: int, seed: int) -> float:
    """Mean return of ``act`` (observations [N, ...] -> actions [N]) over ``episodes`` finished episodes."""
    obs, _ = env.reset(seed=seed)
    totals, running = [], np.zeros(env.num_envs)
    while len(totals) < episodes:
        obs, reward, terminated, truncated, _ = env.step(act(obs))
        running += reward
        for i in np.flatnonzero(terminated | truncated):
            totals.append(running[i])
            running[i] = 0.0
    return float(np.mean(totals[:episodes]))


def env_speed(copies: int, seconds: float = 1.0) -> dict[str, float]:
    """Raw steps/s of every inner-alignment environment: ``copies`` copies stepped together with random actions."""
    from alignlab.inner.envs import ENVS, make_env

    rates = {}
    for name in ENVS:
        env = make_env(name, copies)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        actions = rng.integers(0, env.single_action_space.n, size=(256, copies))
        steps, start_time = 0, time.perf_counter()
        while time.perf_counter() - start_time < seconds:
            env.step(actions[steps % 256])
            steps += 1
        rates[name] = steps * copies / (time.perf_counter() - start_time)
        print(f"{name}: {rates[name]:,.0f} environment steps/s ({copies} copies, random actions)", flush=True)
    return rates


def interval95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval."""
    from scipy import stats

    if len(values) < 2:
        return statistics.fmean(values), float("nan")
    return statistics.fmean(values), float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values)
                                           / math.sqrt(len(values)))


def main() -> None:
    config = parse_bench(PPOBench, bench_parser(PPOBench, "ppo_vs_sb3.py", __doc__))
    reason = start(config)

    import torch
    from stable_baselines3 import PPO

    from alignlab.inner.agents import PPOConfig, train_ppo
    from alignlab.inner.envs import ObjectChoiceEnv

    raw_env_speed = env_speed(config.env_copies)
    env_steps = 2 * config.size + 2  # ObjectChoiceEnv's time limit = SB3's n_steps
    settings = dict(gamma=0.95, gae_lambda=0.95, clip_coef=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)
    ours_rate, peer_rate, ours_return, peer_return = [], [], [], []
    for round_ in range(config.rounds):
        seed = config.seed + round_
        env = ObjectChoiceEnv(config.num_envs, size=config.size)
        ours_cfg = PPOConfig(policy="mlp", hidden=64, total_steps=config.total_steps, lr=config.lr,
                             update_epochs=config.update_epochs, minibatches=config.minibatches, seed=seed,
                             progress=False, **settings)
        torch.manual_seed(seed)
        start_time = time.perf_counter()
        trained = train_ppo(env, ours_cfg)
        ours_rate.append(trained.steps / (time.perf_counter() - start_time))

        peer_env = ObjectChoiceEnv(config.num_envs, size=config.size)
        peer_env.reset(seed=seed)
        batch = config.num_envs * env_steps
        model = PPO("MlpPolicy", sb3_vec_env(peer_env), learning_rate=config.lr, n_steps=env_steps,
                    batch_size=batch // config.minibatches, n_epochs=config.update_epochs, gamma=settings["gamma"],
                    gae_lambda=settings["gae_lambda"], clip_range=settings["clip_coef"],
                    ent_coef=settings["ent_coef"], vf_coef=settings["vf_coef"],
                    max_grad_norm=settings["max_grad_norm"], seed=seed, device="cpu", verbose=0)
        start_time = time.perf_counter()
        model.learn(total_timesteps=config.total_steps)
        peer_rate.append(model.num_timesteps / (time.perf_counter() - start_time))

        def ours_act(obs, policy=trained.policy):
            with torch.no_grad():
                logits, _, _ = policy.step(torch.from_numpy(obs), None)
            return torch.distributions.Categorical(logits=logits).sample().numpy()

        def peer_act(obs, model=model):
            return model.predict(obs, deterministic=False)[0]

        test = 10_000 + seed  # the same test levels for both sides
        ours_return.append(play(ours_act, ObjectChoiceEnv(config.num_envs, size=config.size), config.eval_episodes, test))
        peer_return.append(play(peer_act, ObjectChoiceEnv(config.num_envs, size=config.size), config.eval_episodes, test))
        print(f"round {round_}: alignlab {ours_rate[-1]:,.0f} steps/s, return {ours_return[-1]:.3f} | "
              f"sb3 {peer_rate[-1]:,.0f} steps/s, return {peer_return[-1]:.3f}", flush=True)

    ratio = report("PPO training", ours_rate, peer_rate, "env steps/s", "SB3 PPO")
    ours_mean, ours_half = interval95(ours_return)
    peer_mean, peer_half = interval95(peer_return)
    diff_mean, diff_half = interval95([a - b for a, b in zip(ours_return, peer_return)])
    print(f"final return: alignlab {ours_mean:.3f} ± {ours_half:.3f} | SB3 {peer_mean:.3f} ± {peer_half:.3f} "
          f"(95% intervals over {config.rounds} seeds); difference {diff_mean:+.3f} ± {diff_half:.3f}")
    write_result("ppo_vs_sb3", config, reason, {"steps_per_s": ratio},
                 {"alignlab_steps_per_s": ours_rate, "sb3_steps_per_s": peer_rate},
                 returns={"alignlab": ours_return, "sb3": peer_return,
                          "alignlab_mean": ours_mean, "alignlab_ci95": ours_half, "sb3_mean": peer_mean,
                          "sb3_ci95": peer_half, "difference_mean": diff_mean, "difference_ci95": diff_half},
                 sb3_version=__import__("stable_baselines3").__version__, env_steps_per_s=raw_env_speed)


if __name__ == "__main__":
    main()
