"""Population-based training (Jaderberg et al. 2017, "Population Based Training of Neural Networks").

``members`` PPO agents train side by side, each on its own copy of the environment; every ``interval`` steps
each member's fitness is its mean episode return over its last interval, and the worst ``quantile`` of the
population (whose learning rates start spread log-uniformly over ``lr``·[½, 2]) copy the weights, optimiser state and learning rate of a random member of the best ``quantile``
(exploit), then multiply their learning rate by 0.8 or 1.25 (explore). ``exploit=False`` trains the same
population without selection: plain independent PPO, the control.

Example::

    >>> from alignlab.inner.envs import HarvestEnv
    >>> from alignlab.inner.agents import PPOConfig
    >>> pop = train_population(lambda: HarvestEnv(8), PPOConfig(total_steps=256, steps_per_update=64, progress=False),
    ...                        members=2, interval=128)
    >>> len(pop.policies), len(pop.lrs), len(pop.fitness_history)
    (2, 2, 2)
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from alignlab.errors import InnerError
from alignlab.inner.agents.policies import Policy
from alignlab.inner.agents.ppo import PPOConfig, train_ppo
from alignlab.inner.envs.base import BatchedEnv


@dataclass
class Population:
    policies: list[Policy]
    lrs: list[float]
    fitness_history: list[list[float]] = field(default_factory=list)  # [generation][member]
    copies: int = 0  # exploit steps taken


def train_population(make_env: Callable[[], BatchedEnv], config: PPOConfig, *, members: int = 4,
                     interval: int = 1_000, quantile: float = 0.25, exploit: bool = True) -> Population:
    """Train ``members`` agents for ``config.total_steps`` steps each, selecting every ``interval`` steps."""
    if members < 2 or interval < 1:
        raise InnerError(f"population-based training needs members >= 2 and interval >= 1, got {members}, {interval}")
    rng = random.Random(config.seed)
    envs = [make_env() for _ in range(members)]
    policies: list[Policy | None] = [None] * members
    optimizers: list[torch.optim.Optimizer | None] = [None] * members
    lrs = [config.lr * 2 ** rng.uniform(-1, 1) for _ in range(members)]  # diverse starts, as in the paper
    population = Population([], lrs)
    generations = max(1, config.total_steps // interval)
    cut = max(1, int(members * quantile))
    for generation in range(generations):
        fitness = []
        for i in range(members):
            member = replace(config, total_steps=interval, lr=lrs[i], seed=config.seed * 1000 + generation * members + i,
                             progress=False)
            result = train_ppo(envs[i], member, policy=policies[i], optimizer=optimizers[i])
            if optimizers[i] is None:  # the first interval built them
                policies[i] = result.policy
                optimizers[i] = result.optimizer
            for group in optimizers[i].param_groups:
                group["lr"] = lrs[i]
            fitness.append(float(np.mean([row["mean_return"] for row in result.history])))
        population.fitness_history.append(fitness)
        if exploit and generation < generations - 1:
            order = sorted(range(members), key=lambda j: fitness[j])
            for loser in order[:cut]:
                winner = rng.choice(order[-cut:])
                policies[loser].load_state_dict(policies[winner].state_dict())
                optimizers[loser].load_state_dict(copy.deepcopy(optimizers[winner].state_dict()))
                lrs[loser] = lrs[winner] * rng.choice((0.8, 1.25))
                population.copies += 1
    population.policies = policies
    return population
