"""Agents for the inner-alignment experiments: actor-critic policies and PPO on :mod:`alignlab.core.rl`."""

from alignlab.inner.agents.policies import POLICIES, Policy, make_policy
from alignlab.inner.agents.ppo import Episodes, PPOConfig, TrainResult, collect, evaluate, train_ppo

__all__ = ["POLICIES", "Episodes", "PPOConfig", "Policy", "TrainResult", "collect", "evaluate", "make_policy",
           "train_ppo"]
