"""The registry of training methods: one line per method, naming its code and what it learns from.

A method is ``"module:ConfigClass:function"`` plus its stage (sft, reward, offline, online), the kind of
records it learns from and, where it has one, the loss of :mod:`alignlab.outer.losses` it trains with.
Every pairwise loss declared there with ``register_loss("pair")`` is a method here too (``alignlab train
ipo`` sets ``loss=ipo``), so adding one needs no line in this file. ``alignlab train``, the offline and
online benches and their method lists all read :func:`methods`. Modules are imported when a method is
used, not when it is listed; a mistyped name gets close-match suggestions.

Example::

    >>> config_cls, run = get_method("sft")      # doctest: +SKIP
    >>> run(config_cls())                         # doctest: +SKIP
    >>> sorted(methods("online"))[:3]
    ['fdpg', 'grpo', 'ppo']
"""

from __future__ import annotations

import difflib
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from alignlab.errors import ConfigError


@dataclass(frozen=True)
class Method:
    """One training method: where its code is and what it takes."""

    target: str
    """``module:ConfigClass:function``"""
    stage: Literal["sft", "reward", "offline", "online", "steering", "decoding"]
    """sft, reward (a reward or cost model), offline (a policy from a fixed dataset), online (from its own samples),
    steering (a small policy whose text steers a frozen LM) or decoding (heads that steer a frozen model while it
    generates)"""
    data: str
    """the record kind it learns from best (conversation, pair, ranked, unpaired, prompt, safety)"""
    loss: str | None = None
    """its loss in alignlab.outer.losses, whose declaration says e.g. whether β anchors it to a reference"""
    defaults: dict[str, Any] = field(default_factory=dict)
    """config values the method's name implies (applied before the YAML file and overrides)"""

    @property
    def kl_anchored(self) -> bool:
        """Its β is a KL strength towards the starting model (the offline bench sets one β for all of these)."""
        from alignlab.outer.losses import LOSS_SPECS

        return self.loss is not None and LOSS_SPECS[self.loss].kl_anchored


_BEFORE_PAIRWISE: dict[str, Method] = {
    "sft": Method("alignlab.outer.sft:SFTConfig:train_sft", "sft", "conversation"),
    "reward": Method("alignlab.outer.reward:RewardModelConfig:train_reward", "reward", "pair"),
    "cost": Method("alignlab.outer.online.safe_ppo:CostConfig:train_cost", "reward", "safety"),
    "rule-reward": Method("alignlab.outer.rules:RuleRewardConfig:train_rule_reward", "reward", "rule_labels"),
    "ppo": Method("alignlab.outer.online.ppo:PPOConfig:train_ppo", "online", "prompt"),
    "safe-ppo": Method("alignlab.outer.online.safe_ppo:SafePPOConfig:train_safe_ppo", "online", "prompt"),
    "grpo": Method("alignlab.outer.online.grpo:GRPOConfig:train_grpo", "online", "prompt"),
    "rloo": Method("alignlab.outer.online.grpo:RLOOConfig:train_rloo", "online", "prompt"),
    "reinforce": Method("alignlab.outer.online.grpo:ReinforceConfig:train_reinforce", "online", "prompt"),
    "fdpg": Method("alignlab.outer.online.fdpg:FDPGConfig:train_fdpg", "online", "prompt"),
    "raft": Method("alignlab.outer.online.sampling:RAFTConfig:train_raft", "online", "prompt"),
    "rso": Method("alignlab.outer.online.sampling:RSOConfig:train_rso", "online", "prompt"),
    "spin": Method("alignlab.outer.online.sampling:SPINConfig:train_spin", "online", "conversation"),
    "dsp": Method("alignlab.outer.blackbox.dsp:DSPConfig:train_dsp", "steering", "conversation"),
    "rl4f": Method("alignlab.outer.blackbox.rl4f:RL4FConfig:train_rl4f", "steering", "prompt"),
    "sensei": Method("alignlab.outer.sensei:SenseiConfig:train_sensei", "decoding", "prompt"),
}
_AFTER_PAIRWISE: dict[str, Method] = {
    "rrhf": Method("alignlab.outer.ranked:RRHFConfig:train_ranked", "offline", "ranked", "rrhf"),
    "pro": Method("alignlab.outer.ranked:PROConfig:train_ranked", "offline", "ranked", "pro"),
    "stable-alignment": Method("alignlab.outer.ranked:StableAlignmentConfig:train_ranked", "offline", "ranked",
                               "stable_alignment"),
    "alol": Method("alignlab.outer.ranked:ALoLConfig:train_ranked", "offline", "ranked", "alol"),
    "kto": Method("alignlab.outer.kto:KTOConfig:train_kto", "offline", "unpaired", "kto"),
    # pairs, read as positives and negatives: a negative that knows its chosen answer is penalised where it departs
    "cringe": Method("alignlab.outer.cringe:CringeConfig:train_cringe", "offline", "pair", "cringe"),
    "hindsight": Method("alignlab.outer.hindsight:HindsightConfig:train_hindsight", "offline", "pair"),
    "second-thoughts": Method("alignlab.outer.second_thoughts:SecondThoughtsConfig:train_second_thoughts", "offline",
                              "pair"),
}


def methods(stage: str | None = None, *, data: str | None = None) -> dict[str, Method]:
    """Every training method, pairwise losses included, in a fixed order; or those of one ``stage`` / ``data`` kind.

    Example:
        >>> list(methods("reward"))
        ['reward', 'cost', 'rule-reward']
        >>> methods()["ipo"].defaults, methods()["ipo"].kl_anchored, methods()["orpo"].kl_anchored
        ({'loss': 'ipo', 'output': 'runs/ipo'}, True, False)
    """
    from alignlab.outer.losses import pairwise_losses

    pairwise = {name: Method("alignlab.outer.preference:PreferenceConfig:train_preference", "offline", "pair",
                             name, {"loss": name, "output": f"runs/{name}"}) for name in pairwise_losses()}
    table = {**_BEFORE_PAIRWISE, **pairwise, **_AFTER_PAIRWISE}
    return {name: m for name, m in table.items()
            if (stage is None or m.stage == stage) and (data is None or m.data == data)}


def get_method_spec(name: str) -> Method:
    """The declaration of a training method; a mistyped name raises a ConfigError with close matches.

    Example:
        >>> get_method_spec("kto").data
        'unpaired'
    """
    table = methods()
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; available: {', '.join(table)}"
        raise ConfigError(f"unknown training method '{name}'{hint}")
    return table[name]


def get_method(name: str) -> tuple[type, Callable[..., Any]]:
    """(config dataclass, train function) of a training method (its module is imported now)."""
    module, config_cls, fn = get_method_spec(name).target.split(":")
    mod = importlib.import_module(module)
    return getattr(mod, config_cls), getattr(mod, fn)


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
    base = {**get_method_spec(method).defaults, **settings}
    return fn(load_config(config_cls, config, overrides or [], base=base))


_DEPRECATED = {"TRAIN_METHODS": lambda: {name: m.target for name, m in methods().items()},
               "METHOD_DEFAULTS": lambda: {name: m.defaults for name, m in methods().items() if m.defaults},
               "PAIRWISE_LOSSES": lambda: [name for name, m in methods().items() if m.defaults.get("loss") == name]}


def __getattr__(name: str) -> Any:
    """``TRAIN_METHODS``, ``METHOD_DEFAULTS`` and ``PAIRWISE_LOSSES`` still import for one release (with a
    DeprecationWarning); :func:`methods` now says what they listed."""
    if name in _DEPRECATED:
        warnings.warn(f"alignlab.registry.{name} is deprecated and will be removed in the next release; "
                      "use alignlab.registry.methods()", DeprecationWarning, stacklevel=2)
        return _DEPRECATED[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
