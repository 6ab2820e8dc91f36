"""Inner-alignment environments: batched numpy games with gymnasium's vector API (:class:`BatchedEnv`).

=====================  ===================================================================================
``coin_run``           :class:`CoinRunEnv`: the coin at the level's end in training, anywhere at test
``reward_channel``     :class:`RewardChannelBandit`: the reward shown in the observation, alterable at test
``objects``            :class:`ObjectChoiceEnv`: three objectives that explain the training reward equally
``harvest``            :class:`HarvestEnv`: planting forgoes this episode's reward for the next one's
``oversight``          :class:`OversightEnv`: defecting is caught only while overseen
=====================  ===================================================================================

Example::

    >>> env = make_env("coin_run", num_envs=8, length=6)
    >>> env.num_envs, type(env).__name__
    (8, 'CoinRunEnv')
"""

from __future__ import annotations

import difflib
from typing import Any

from alignlab.errors import InnerError
from alignlab.inner.envs.bandit import RewardChannelBandit
from alignlab.inner.envs.base import BatchedEnv
from alignlab.inner.envs.coin import CoinRunEnv
from alignlab.inner.envs.harvest import HarvestEnv
from alignlab.inner.envs.objects import ObjectChoiceEnv
from alignlab.inner.envs.oversight import OversightEnv

ENVS: dict[str, type[BatchedEnv]] = {"coin_run": CoinRunEnv, "reward_channel": RewardChannelBandit,
                                     "objects": ObjectChoiceEnv, "harvest": HarvestEnv, "oversight": OversightEnv}


def make_env(name: str, num_envs: int, **kwargs: Any) -> BatchedEnv:
    """The environment registered as ``name`` with ``num_envs`` copies (a mistyped name suggests close ones)."""
    if name not in ENVS:
        close = difflib.get_close_matches(name, ENVS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; choose from {', '.join(ENVS)}"
        raise InnerError(f"unknown environment '{name}'{hint}")
    return ENVS[name](num_envs, **kwargs)


__all__ = ["ENVS", "BatchedEnv", "CoinRunEnv", "HarvestEnv", "ObjectChoiceEnv", "OversightEnv",
           "RewardChannelBandit", "make_env"]
