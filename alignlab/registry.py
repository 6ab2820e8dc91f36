"""The registry of training methods: one line per method, ``name -> "module:ConfigClass:function"``.

Adding a method means writing its module, its test and one line here. Names are resolved lazily, so
listing methods imports nothing heavy; a mistyped name gets close-match suggestions.

Example::

    >>> config_cls, run = get_method("sft")      # doctest: +SKIP
    >>> run(config_cls())                         # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from typing import Any

from alignlab.errors import ConfigError

# Methods that train on pairs with one of alignlab.outer.losses; `alignlab train ipo` sets loss=ipo.
PAIRWISE_LOSSES = ["dpo", "ipo", "slic", "robust_dpo", "exo", "nca", "bco", "sppo", "aot", "aot_unpaired", "apo",
                   "discopop", "sigmoid_norm", "orpo", "simpo", "cpo"]

TRAIN_METHODS: dict[str, str] = {
    "sft": "alignlab.outer.sft:SFTConfig:train_sft",
    "reward": "alignlab.outer.reward:RewardConfig:train_reward",
    "cost": "alignlab.outer.online.safe_ppo:CostConfig:train_cost",
    "ppo": "alignlab.outer.online.ppo:PPOConfig:train_ppo",
    "safe-ppo": "alignlab.outer.online.safe_ppo:SafePPOConfig:train_safe_ppo",
    "grpo": "alignlab.outer.online.grpo:GRPOConfig:train_grpo",
    "rloo": "alignlab.outer.online.grpo:RLOOConfig:train_rloo",
    "reinforce": "alignlab.outer.online.grpo:ReinforceConfig:train_reinforce",
    "raft": "alignlab.outer.online.sampling:RAFTConfig:train_raft",
    "rso": "alignlab.outer.online.sampling:RSOConfig:train_rso",
    "spin": "alignlab.outer.online.sampling:SPINConfig:train_spin",
    **{name: "alignlab.outer.preference:PreferenceConfig:train_preference" for name in PAIRWISE_LOSSES},
    "rrhf": "alignlab.outer.ranked:RRHFConfig:train_ranked",
    "pro": "alignlab.outer.ranked:PROConfig:train_ranked",
    "stable-alignment": "alignlab.outer.ranked:StableAlignmentConfig:train_ranked",
    "kto": "alignlab.outer.kto:KTOConfig:train_kto",
    "cringe": "alignlab.outer.cringe:CringeConfig:train_cringe",
    "hindsight": "alignlab.outer.hindsight:HindsightConfig:train_hindsight",
}


def resolve(name: str, table: dict[str, str], what: str) -> list[Any]:
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(sorted(table))}"
        raise ConfigError(f"unknown {what} '{name}'{hint}")
    module, *attrs = table[name].split(":")
    mod = importlib.import_module(module)
    return [getattr(mod, attr) for attr in attrs]


# Config values a method name implies (applied before the YAML file and overrides).
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    **{name: {"loss": name, "output": f"runs/{name}"} for name in PAIRWISE_LOSSES},
}


def get_method(name: str) -> tuple[type, Callable[..., Any]]:
    """(config dataclass, train function) of a training method."""
    config_cls, fn = resolve(name, TRAIN_METHODS, "training method")
    return config_cls, fn


def train(method: str, config: str | None = None, overrides: list[str] | None = None, **settings: Any) -> Any:
    """Train with ``method``: the Python twin of ``alignlab train METHOD``.

    ``config`` is an optional YAML file, ``overrides`` are ``key=value`` strings and ``settings`` are
    keyword overrides of top-level keys (sections as dicts).

    Example::

        >>> from alignlab.registry import train
        >>> train("ipo", overrides=["model.name_or_path=runs/sft", "data.path=pairs.jsonl"], beta=0.1)  # doctest: +SKIP
    """
    from alignlab.config import load_config

    config_cls, fn = get_method(method)
    base = {**METHOD_DEFAULTS.get(method, {}), **settings}
    return fn(load_config(config_cls, config, overrides or [], base=base))
