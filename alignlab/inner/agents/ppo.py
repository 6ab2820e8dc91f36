"""PPO for the inner-alignment agents, on the RL maths of :mod:`alignlab.core.rl` (Schulman et al. 2017).

One update reads top to bottom in :func:`train_ppo`:

1. **collect**: the batch is [N episodes, T steps] with ``mask`` 1 on the steps before each episode ended — the
   layout the core's functions take, so a step is a "token" and an episode a "sequence". Recurrent policies
   need whole episodes: every copy of the environment plays one from a reset (:func:`collect`, repeated until
   the batch holds ``steps_per_update`` steps). Feedforward policies step the copies on without resets, as
   Stable-Baselines3 does (:class:`StreamCollector`), and each copy's ``n_steps`` are cut into its episodes;
   an episode the rollout's end cuts short gets γ·V(next observation) added to its last reward, which makes
   the core's GAE bootstrap exactly as if the episode went on;
2. **advantages**: ``gae`` (Schulman et al. 2016, eq. 16), V = 0 after the last step;
3. **learn**: ``update_epochs`` passes over shuffled minibatches, each minimising
   ``clipped_policy_loss`` (eq. 7) + ``vf_coef``·``clipped_value_loss`` − ``ent_coef``·entropy, with the
   advantages whitened per minibatch and the gradient norm clipped. Feedforward policies learn from the
   steps (shuffled one by one, as Stable-Baselines3 and CleanRL do); recurrent policies from whole episodes.

An episode cut at the time limit is treated as ended (its value after the cut is 0), as CleanRL does.

Example::

    >>> from alignlab.inner.envs import CoinRunEnv
    >>> result = train_ppo(CoinRunEnv(num_envs=8, length=5), PPOConfig(total_steps=400, progress=False))
    >>> result.steps >= 400, len(result.history) > 0
    (True, True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alignlab.core.rl import (
    clipped_policy_loss,
    clipped_value_loss,
    entropy_from_logits,
    gae,
    masked_mean,
    whiten,
)
from alignlab.errors import InnerError
from alignlab.inner.agents.policies import POLICIES, Policy, make_policy
from alignlab.inner.envs.base import BatchedEnv


@dataclass
class PPOConfig:
    """PPO's settings (defaults: small and fast, for the toy environments)."""

    policy: str = "mlp"
    """architecture: mlp, cnn, lstm or transformer"""
    hidden: int = 64
    """hidden width of the policy (its capacity)"""
    total_steps: int = 20_000
    """environment steps to learn from (steps inside episodes; the update that crosses this number is the last)"""
    steps_per_update: int | None = None
    """environment steps per update: whole batches of episodes are collected until there are this many (None:
    num_envs × the time limit, Stable-Baselines3's n_envs × n_steps)"""
    lr: float = 2.5e-3
    """Adam learning rate"""
    gamma: float = 0.95
    """discount γ"""
    gae_lambda: float = 0.95
    """GAE's λ"""
    clip_coef: float = 0.2
    """PPO's ε: the probability ratio is clipped to [1 − ε, 1 + ε]"""
    value_clip: float | None = None
    """clip the value's change to ±this per update (None: no clipping, Stable-Baselines3's default)"""
    ent_coef: float = 0.01
    """weight of the entropy bonus"""
    vf_coef: float = 0.5
    """weight of the value loss"""
    update_epochs: int = 4
    """passes over each batch"""
    minibatches: int = 4
    """minibatches per pass"""
    max_grad_norm: float = 0.5
    """gradient-norm clip"""
    seed: int = 0
    """seed of the policy's initialisation, the sampling and the environment's levels"""
    progress: bool = True
    """show a progress bar"""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            make_policy(self.policy, (1,), 1)  # raises with close matches
        if self.total_steps < 1 or self.minibatches < 1 or self.update_epochs < 1:
            raise InnerError("PPOConfig: total_steps, minibatches and update_epochs must be >= 1")


@dataclass
class Episodes:
    """One batch of N episodes, [N, T] per step (``mask`` 1 before each episode ended)."""

    obs: torch.Tensor  # [N, T, *obs_shape]
    actions: torch.Tensor  # [N, T]
    logps: torch.Tensor  # [N, T]
    values: torch.Tensor  # [N, T]
    rewards: torch.Tensor  # [N, T]
    mask: torch.Tensor  # [N, T]
    outcome: np.ndarray  # [N], index into the environment's OUTCOMES

    @property
    def returns(self) -> torch.Tensor:  # [N] undiscounted
        return (self.rewards * self.mask).sum(1)

    @property
    def steps(self) -> int:
        return int(self.mask.sum())


@dataclass
class TrainResult:
    policy: Policy
    steps: int
    optimizer: torch.optim.Optimizer | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def sample(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Actions [N] from logits [N, A]: argmax when ``greedy``, else a categorical draw (Gumbel-max)."""
    if greedy:
        return logits.argmax(-1)
    uniform = torch.rand(logits.shape, generator=generator).clamp_(1e-20, 1.0)
    return (logits - torch.log(-torch.log(uniform))).argmax(-1)


@torch.no_grad()
def collect(policy: Policy, env: BatchedEnv, *, greedy: bool = False, generator: torch.Generator | None = None
            ) -> Episodes:
    """Play one episode in every copy of ``env`` (from a reset) and return the batch."""
    obs_np, _ = env.reset()
    n, horizon = env.num_envs, env.max_steps
    obs = torch.zeros((n, horizon, *env.single_observation_space.shape))
    actions = torch.zeros(n, horizon, dtype=torch.long)
    logps, values, rewards, mask = (torch.zeros(n, horizon) for _ in range(4))
    outcome = np.full(n, -1)
    alive = np.ones(n, dtype=bool)
    state = policy.initial_state(n)
    for t in range(horizon):
        obs[:, t] = torch.from_numpy(obs_np)
        logits, value, state = policy.step(obs[:, t], state)
        action = sample(logits, greedy, generator)
        logps[:, t] = torch.log_softmax(logits, -1).gather(-1, action[:, None])[:, 0]
        values[:, t], actions[:, t] = value, action
        mask[:, t] = torch.from_numpy(alive.astype(np.float32))
        obs_np, reward, terminated, truncated, info = env.step(action.numpy())
        rewards[:, t] = torch.from_numpy(reward) * mask[:, t]
        ended = alive & (terminated | truncated)
        if ended.any():
            outcome[ended] = info["outcome"][ended]
            alive &= ~ended
            if not alive.any():  # the finished copies have moved on to new levels; those steps are not kept
                return Episodes(obs[:, :t + 1], actions[:, :t + 1], logps[:, :t + 1], values[:, :t + 1],
                                rewards[:, :t + 1], mask[:, :t + 1], outcome)
    return Episodes(obs, actions, logps, values, rewards, mask, outcome)


class StreamCollector:
    """Rollouts of ``n_steps`` per copy that carry on where the last one stopped (no reset between them),
    returned as the episodes they hold (see the module docstring)."""

    def __init__(self, env: BatchedEnv):
        self.env, self.obs = env, None

    @torch.no_grad()
    def __call__(self, policy: Policy, n_steps: int, gamma: float, generator: torch.Generator | None = None
                 ) -> Episodes:
        env, n = self.env, self.env.num_envs
        if self.obs is None:
            self.obs = env.reset()[0]
        obs = torch.zeros((n, n_steps, *env.single_observation_space.shape))
        actions = torch.zeros(n, n_steps, dtype=torch.long)
        logps, values, rewards = (torch.zeros(n, n_steps) for _ in range(3))
        ended, outcome = np.zeros((n, n_steps), dtype=bool), np.full((n, n_steps), -1)
        for t in range(n_steps):
            obs[:, t] = torch.from_numpy(self.obs)
            logits, values[:, t], _ = policy.step(obs[:, t], None)
            actions[:, t] = sample(logits, False, generator)
            logps[:, t] = torch.log_softmax(logits, -1).gather(-1, actions[:, t, None])[:, 0]
            self.obs, reward, terminated, truncated, info = env.step(actions[:, t].numpy())
            rewards[:, t] = torch.from_numpy(reward)
            ended[:, t] = terminated | truncated
            if ended[:, t].any():
                outcome[:, t] = info["outcome"]
        _, next_value, _ = policy.step(torch.from_numpy(self.obs), None)
        rewards[:, -1] += gamma * next_value * torch.from_numpy(~ended[:, -1])  # bootstrap the cut episodes
        # cut each copy's stream at its episode ends: rows (copy, first step, length), padded to n_steps
        copy, first, length = [], [], []
        for i in range(n):
            bounds = [0, *(np.flatnonzero(ended[i]) + 1)]
            if bounds[-1] < n_steps:
                bounds.append(n_steps)
            for a, b in zip(bounds[:-1], bounds[1:]):
                copy.append(i), first.append(a), length.append(b - a)
        copy_t, first_t, length_t = torch.tensor(copy), torch.tensor(first), torch.tensor(length)
        steps = torch.arange(n_steps)
        at = (first_t[:, None] + steps).clamp(max=n_steps - 1)  # [rows, n_steps]
        mask = (steps < length_t[:, None]).float()
        rows = copy_t[:, None], at

        return Episodes(obs[rows] * mask.view(*mask.shape, *[1] * (obs.dim() - 2)), actions[rows], logps[rows],
                        values[rows] * mask, rewards[rows] * mask, mask,
                        outcome[np.asarray(copy), np.asarray(first) + np.asarray(length) - 1])


def concat(batches: list[Episodes]) -> Episodes:
    """Several batches as one (episodes padded with masked steps to the longest)."""
    if len(batches) == 1:
        return batches[0]
    horizon = max(b.mask.shape[1] for b in batches)

    def cat(name: str) -> torch.Tensor:
        parts = [getattr(b, name) for b in batches]
        padded = [torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, horizon - x.shape[1])) for x in parts]
        return torch.cat(padded)

    return Episodes(*(cat(name) for name in ("obs", "actions", "logps", "values", "rewards", "mask")),
                    np.concatenate([b.outcome for b in batches]))


def ppo_losses(policy: Policy, batch: Episodes, advantages: torch.Tensor, returns: torch.Tensor,
               config: PPOConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's loss on a minibatch of [n, T] steps: clipped surrogate + value loss − entropy bonus."""
    logits, values = policy(batch.obs)
    logps = torch.log_softmax(logits, -1).gather(-1, batch.actions[..., None])[..., 0]
    advantages = whiten(advantages, batch.mask)  # per-minibatch normalisation, as SB3 and CleanRL
    pg_loss, stats = clipped_policy_loss(logps, batch.logps, advantages, batch.mask, config.clip_coef)
    clip = float("inf") if config.value_clip is None else config.value_clip  # ±∞: the plain squared error
    v_loss, v_stats = clipped_value_loss(values, batch.values, returns, batch.mask, clip)
    # [n·T, A] rows in one call: the core's row-by-row path is for language-model vocabularies
    entropy = masked_mean(entropy_from_logits(logits.flatten(0, -2)).view(batch.mask.shape), batch.mask)
    loss = pg_loss + config.vf_coef * v_loss - config.ent_coef * entropy
    return loss, {**stats, **v_stats, "entropy": entropy.detach(), "pg_loss": pg_loss.detach()}


def _rows(batch: Episodes, advantages: torch.Tensor, returns: torch.Tensor, recurrent: bool
          ) -> tuple[Episodes, torch.Tensor, torch.Tensor]:
    """The units minibatches are drawn from: whole episodes for recurrent policies, else every real step as an
    episode of length 1 (no padding to carry through the network)."""
    if recurrent:
        return batch, advantages, returns
    keep = batch.mask.bool()

    def steps(x: torch.Tensor) -> torch.Tensor:
        return x[keep][:, None]

    flat = Episodes(steps(batch.obs), steps(batch.actions), steps(batch.logps), steps(batch.values),
                    steps(batch.rewards), steps(batch.mask), batch.outcome)
    return flat, steps(advantages), steps(returns)


def _select(batch: Episodes, index: torch.Tensor) -> Episodes:
    return Episodes(batch.obs[index], batch.actions[index], batch.logps[index], batch.values[index],
                    batch.rewards[index], batch.mask[index], batch.outcome)


def train_ppo(env: BatchedEnv, config: PPOConfig, *, policy: Policy | None = None,
              optimizer: torch.optim.Optimizer | None = None) -> TrainResult:
    """Train ``policy`` (a new ``config.policy`` if None) on ``env`` for ``config.total_steps`` steps.

    ``history`` has one row per update: steps so far, the batch's mean return and outcome shares, and the
    last minibatch's losses. Pass ``policy`` and ``optimizer`` to continue training (population-based training
    does, between its selections).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    env.reset(seed=config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    if policy is None:
        policy = make_policy(config.policy, env.single_observation_space.shape, int(env.single_action_space.n),
                             config.hidden, max_len=env.max_steps)
    if optimizer is None:
        optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, eps=1e-5, fused=True)
    result, start = TrainResult(policy, 0, optimizer), time.perf_counter()
    bar = tqdm(total=config.total_steps, disable=not config.progress, desc=f"ppo {config.policy}", leave=False)
    per_update = config.steps_per_update or env.num_envs * env.max_steps
    stream = StreamCollector(env)
    while result.steps < config.total_steps:
        if policy.recurrent:
            batches = [collect(policy, env, generator=generator)]
            while sum(b.steps for b in batches) < per_update:
                batches.append(collect(policy, env, generator=generator))
            batch = concat(batches)
        else:
            batch = stream(policy, max(1, per_update // env.num_envs), config.gamma, generator)
        advantages, returns = gae(batch.rewards, batch.values, batch.mask, config.gamma, config.gae_lambda)
        rows, row_adv, row_ret = _rows(batch, advantages, returns, policy.recurrent)
        n_rows = rows.actions.shape[0]
        size = max(1, n_rows // config.minibatches)
        for _ in range(config.update_epochs):
            order = torch.randperm(n_rows, generator=generator)
            for begin in range(0, n_rows, size):
                index = order[begin:begin + size]
                loss, stats = ppo_losses(policy, _select(rows, index), row_adv[index], row_ret[index], config)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm, foreach=True)
                optimizer.step()
        result.steps += batch.steps
        bar.update(batch.steps)
        done = batch.outcome >= 0  # episodes that ended inside the batch
        shares = np.bincount(batch.outcome[done], minlength=len(env.OUTCOMES)) / max(1, done.sum())
        result.history.append({"steps": result.steps, "mean_return": float(batch.returns[torch.from_numpy(done)].mean()),
                               **{f"outcome_{name}": float(s) for name, s in zip(env.OUTCOMES, shares)},
                               **{k: float(v) for k, v in stats.items()}})
    bar.close()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate(policy: Policy, env: BatchedEnv, episodes: int, *, greedy: bool = False, seed: int = 0
             ) -> dict[str, Any]:
    """Play at least ``episodes`` episodes (whole batches of ``env.num_envs``): the mean return, the share of
    each outcome, and the per-episode returns and outcomes."""
    env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    returns, outcomes = [], []
    while len(returns) < episodes:
        batch = collect(policy, env, greedy=greedy, generator=generator)
        returns.extend(batch.returns.tolist())
        outcomes.extend(batch.outcome.tolist())
    counts = np.bincount(np.asarray(outcomes)[np.asarray(outcomes) >= 0], minlength=len(env.OUTCOMES))
    return {"mean_return": float(np.mean(returns)), "episodes": len(returns),
            "outcomes": {name: float(c) / len(outcomes) for name, c in zip(env.OUTCOMES, counts)},
            "returns": returns, "outcome_per_episode": outcomes}
