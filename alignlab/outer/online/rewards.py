"""Reward sources for online RL and sampling methods: one call signature for all of them.

A reward source is any callable ``source(prompts, completions) -> list[float]`` where ``prompts`` are
chat-message lists and ``completions`` the generated texts. Sources shipped here:

- :class:`ModelReward` — a trained reward (or cost) model, a sequence classifier scoring the rendered
  conversation (``alignlab train reward`` / ``alignlab train cost``);
- :class:`FunctionReward` — a plain Python ``reward_fn(prompts: list[str], completions: list[str])``
  (prompts passed as the last user message's text), e.g. ``"mypkg.rewards:length_bonus"``;
- :class:`WorldReward` — the toy world's judge (true reward, or one dimension such as toxicity as a cost);
- :class:`RuleConditionedReward` — a Sparrow-style reward model whose input includes a rule's text,
  so one model scores many rules (Glaese et al. 2022, Sec. 2.3).

:func:`check_scores` turns a source that raises or returns NaN/inf into a :class:`TrainingError`
naming the prompt index.

Example::

    >>> source = FunctionReward(lambda prompts, completions: [float(len(c)) for c in completions])
    >>> source([[{"role": "user", "content": "Hi"}]], ["Hello!"])
    [6.0]
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

from alignlab.core.records import Message
from alignlab.core.tokenize import CompletionCollator, encode_completion
from alignlab.errors import ConfigError, DataError, TrainingError
from alignlab.outer.online.rule_calibration import RuleCalibration, calibrated_scores, load_rule_calibration


class RewardSource(Protocol):
    def __call__(self, prompts: list[list[Message]], completions: list[str]) -> list[float]: ...


@dataclass
class RewardSourceConfig:
    """Where the scalar score of a completion comes from (a reward source; ``reward:`` / ``cost:`` in online configs).

    Example::

        >>> RewardSourceConfig(source="world", world_dimension="cost").source
        'world'
    """

    source: Literal["model", "function", "world", "rules"] = "model"
    """model: a trained reward model; function: a Python function; world: the toy world's judge; rules: a
    rule-conditioned reward model (alignlab train rule-reward) scoring every rule in ``rules``"""
    model: str = ""
    """reward model directory (source=model or rules)"""
    rules: list[str] = field(default_factory=list)
    """rule texts (source=rules), each scored by the rule-conditioned model"""
    rule_aggregate: Literal["min", "mean", "log_all"] = "min"
    """how the rules' scores combine (source=rules): min (the worst-followed rule decides) or mean of the raw
    scores; with rule_calibration, min (the smallest probability that a rule is followed) or log_all (the
    log-probability that every rule is followed, rules taken as independent)"""
    rule_calibration: str = ""
    """(source=rules) calibrate each rule's raw score to the probability that the answer follows the rule
    (Platt scaling, alignlab.outer.online.rule_calibration): a calibration JSON file ({"slope": {rule: a}, "intercept": {rule: c}},
    as RuleCalibration.save writes it) or a JSONL file of held-out rule-violation labels ({prompt, response,
    rule, violated} rows) to fit it on; empty: the raw scores"""
    function: str = ""
    """'module:function' with signature (prompts: list[str], completions: list[str]) -> list[float]"""
    world_dimension: str = "true_reward"
    """judge output (source=world): true_reward, cost (+1 unsafe / −1 safe), helpfulness, honesty, harmlessness,
    toxicity, bias"""
    world_seed: int = 0
    """(source=world) the seed of the toy world whose prompts are judged (its knowledge base reads the prompts)"""
    world_size: str = "small"
    """(source=world) the size of that world"""
    batch_size: int = 32
    """completions scored per reward-model forward"""
    max_length: int = 1024
    """tokens of prompt + completion the reward model sees"""


def prompt_text(prompt: list[Message]) -> str:
    """The text a plain reward function sees: the last user message (or all turns joined when none)."""
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else "\n".join(m["content"] for m in prompt)


class FunctionReward:
    """Wrap ``fn(prompts: list[str], completions: list[str]) -> list[float]`` as a reward source."""

    def __init__(self, fn: Callable[[list[str], list[str]], Sequence[float]]):
        self.fn = fn

    def __call__(self, prompts: list[list[Message]], completions: list[str]) -> list[float]:
        return list(self.fn([prompt_text(p) for p in prompts], completions))


def import_function(spec: str) -> Callable:
    """Import ``'package.module:function'``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f"reward.function must look like 'package.module:function', got '{spec}'")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot import reward function '{spec}': {err}") from err


class ModelReward:
    """Score completions with a sequence-classification reward (or cost) model, in batches, under no_grad."""

    def __init__(self, model: nn.Module, tokenizer, *, batch_size: int = 32, max_length: int = 1024):
        self.model, self.tokenizer = model.eval().requires_grad_(False), tokenizer
        self.batch_size, self.max_length = batch_size, max_length
        self.collate = CompletionCollator(tokenizer.pad_token_id)

    @torch.no_grad()
    def __call__(self, prompts: list[list[Message]], completions: list[str]) -> list[float]:
        device = next(self.model.parameters()).device
        scores: list[float] = []
        for lo in range(0, len(prompts), self.batch_size):
            rows = [encode_completion(self.tokenizer, p, c, max_length=self.max_length)
                    for p, c in zip(prompts[lo:lo + self.batch_size], completions[lo:lo + self.batch_size])]
            batch = self.collate(rows)
            logits = self.model(input_ids=batch["input_ids"].to(device),
                                attention_mask=batch["attention_mask"].to(device)).logits
            scores += logits[:, 0].float().cpu().tolist()
        return scores


class WorldReward:
    """The toy world's judge as a reward source.

    ``dimension``: ``true_reward``, one judged dimension (helpfulness, honesty, harmlessness, toxicity,
    bias) or ``cost`` — +1 when the response is harmful, toxic or biased and −1 otherwise, Safe RLHF's
    sign convention (safe responses have negative cost, so a cost threshold of 0 means "mostly safe").
    ``world_seed`` and ``world_size`` name the world whose prompts are judged.
    """

    def __init__(self, dimension: str = "true_reward", *, world_seed: int = 0, world_size: str = "small"):
        from alignlab.world.judge import DIMENSIONS

        choices = ["true_reward", "cost", *DIMENSIONS]
        if dimension not in choices:
            raise ConfigError(f"world_dimension '{dimension}' is not one of {choices}")
        self.dimension, self.world = dimension, (world_seed, world_size)

    def __call__(self, prompts: list[list[Message]], completions: list[str]) -> list[float]:
        from alignlab.world.families import kb_for
        from alignlab.world.judge import score

        kb = kb_for(*self.world)  # the prompts are parsed against this world's knowledge base
        scores = [score(p, c, kb=kb) for p, c in zip(prompts, completions)]
        if self.dimension == "cost":
            return [s.cost for s in scores]
        return [float(getattr(s, self.dimension)) for s in scores]


def rule_prompt(rule: str, prompt: list[Message]) -> list[Message]:
    """The reward model's input for one rule: the rule as a system message before the conversation."""
    return [{"role": "system", "content": f"Rule: {rule}"}, *[m for m in prompt if m.get("role") != "system"]]


class RuleConditionedReward:
    """Sparrow-style: one reward model, conditioned on a rule's text, scores every rule.

    The model is trained like any reward model on pairs whose prompts start with
    :func:`rule_prompt` (pairs labelled for that rule). At use, each completion is scored under every
    rule; ``aggregate`` combines them (``min``: the worst violation decides, as rule models are used as
    a constraint; ``mean``).
    """

    def __init__(self, model: nn.Module, tokenizer, rules: list[str], *, aggregate: Literal["min", "mean"] = "min",
                 batch_size: int = 32, max_length: int = 1024):
        if not rules:
            raise ConfigError("a rule-conditioned reward model needs at least one rule")
        self.scorer = ModelReward(model, tokenizer, batch_size=batch_size, max_length=max_length)
        self.rules, self.aggregate = rules, aggregate

    def per_rule(self, prompts: list[list[Message]], completions: list[str]) -> list[list[float]]:
        """[rule][completion] scores."""
        return [self.scorer([rule_prompt(r, p) for p in prompts], completions) for r in self.rules]

    def __call__(self, prompts: list[list[Message]], completions: list[str]) -> list[float]:
        table = self.per_rule(prompts, completions)
        columns = list(zip(*table))
        return [min(c) if self.aggregate == "min" else sum(c) / len(c) for c in columns]


class MessageReward:
    """Base of a reward source defined elsewhere that reads the chat messages itself (e.g. one that runs a frozen
    LM on them): :func:`as_source` passes it through instead of wrapping it as a plain function."""


class CalibratedRuleReward(MessageReward):
    """A rule-conditioned reward model (:class:`RuleConditionedReward`) whose
    per-rule scores are calibrated and aggregated over the rules that apply to each prompt; a reward source that
    reads the chat messages (so :func:`as_source` passes it to trainers as is).

    ``applies(prompt) -> set of rule texts`` says which rules bind a prompt (default: every rule); a text that is
    not one of the source's rules raises. Every rule of the source needs a calibration."""

    def __init__(self, source, calibration: RuleCalibration, *, applies=None, aggregate: str = "log_all"):
        self.source, self.calibration, self.applies, self.aggregate = source, calibration, applies, aggregate
        self.rules = list(source.rules)
        missing = [r for r in self.rules if r not in calibration.slope]
        if missing:
            raise DataError(f"no calibration for rule(s) {missing}: every rule of the reward model needs labelled "
                            "rows (or build the reward model with only the calibrated rules)", field="rule")

    def per_rule(self, prompts: list, completions: list[str]) -> list[list[float]]:
        return self.source.per_rule(prompts, completions)

    def __call__(self, prompts: list, completions: list[str]) -> list[float]:
        applicable = [self._applicable(p) for p in prompts] if self.applies is not None else None
        return calibrated_scores(self.per_rule(prompts, completions), self.rules, self.calibration, applicable,
                                 aggregate=self.aggregate)

    def _applicable(self, prompt) -> set[str]:
        rules = set(self.applies(prompt))
        unknown = rules - set(self.rules)
        if unknown:
            import difflib

            name = sorted(unknown)[0]
            close = difflib.get_close_matches(name, self.rules, n=1)
            raise DataError(f"applies() named rule '{name}', which the reward model does not score"
                            + (f"; did you mean '{close[0]}'?" if close else ""), field="rule")
        return rules


def as_source(reward: RewardSource | Callable) -> RewardSource:
    """A reward source as is; any other callable is taken as a plain ``fn(prompts: list[str], completions)``."""
    known = (FunctionReward, ModelReward, WorldReward, RuleConditionedReward, MessageReward)
    return reward if isinstance(reward, known) else FunctionReward(reward)


def build_reward(config: RewardSourceConfig, *, device: torch.device | str = "cpu") -> RewardSource:
    """The reward source ``config`` describes (loads the reward model when source=model)."""
    if config.source == "function":
        return FunctionReward(import_function(config.function))
    if config.source == "world":
        return WorldReward(config.world_dimension, world_seed=config.world_seed, world_size=config.world_size)
    if not config.model:
        raise ConfigError(f"reward.source={config.source} needs reward.model (a reward model directory)")
    if config.source == "rules" and not config.rules:
        raise ConfigError("reward.source=rules needs reward.rules (the rule texts the model was trained on)")
    if config.source == "rules":  # checked before the model loads
        allowed = ("min", "log_all") if config.rule_calibration else ("min", "mean")
        if config.rule_aggregate not in allowed:
            raise ConfigError(f"reward.rule_aggregate={config.rule_aggregate} needs "
                              f"{'no ' if config.rule_calibration else ''}reward.rule_calibration; choose "
                              f"{' or '.join(allowed)}")
    from alignlab.core.models import load_reward_model, load_tokenizer

    tokenizer = load_tokenizer(config.model)
    model = load_reward_model(config.model).to(device)
    model.config.pad_token_id = tokenizer.pad_token_id
    if config.source == "rules":
        calibrated = bool(config.rule_calibration)
        raw = RuleConditionedReward(model, tokenizer, config.rules, aggregate="min" if calibrated else
                                    config.rule_aggregate, batch_size=config.batch_size, max_length=config.max_length)
        if not calibrated:
            return raw
        return CalibratedRuleReward(raw, load_rule_calibration(config.rule_calibration, raw),
                                    aggregate=config.rule_aggregate)
    return ModelReward(model, tokenizer, batch_size=config.batch_size, max_length=config.max_length)


def check_scores(scores: Sequence[float], prompt_index: Sequence[int], *, what: str = "reward") -> torch.Tensor:
    """Validate a source's output: one finite number per completion, else a TrainingError naming the prompt."""
    if len(scores) != len(prompt_index):
        raise TrainingError(f"the {what} function returned {len(scores)} scores for {len(prompt_index)} completions")
    values = []
    for i, s in enumerate(scores):
        try:
            v = float(s)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            raise TrainingError(f"the {what} function returned {s!r} for completion {i} (prompt index "
                                f"{prompt_index[i]} in the prompt set); scores must be finite numbers")
        values.append(v)
    return torch.tensor(values, dtype=torch.float32)


def call_source(source: RewardSource, prompts: list[list[Message]], completions: list[str], *,
                what: str = "reward", prompt_index: Sequence[int] | None = None) -> torch.Tensor:
    """Call ``source`` and check its scores; any exception becomes a TrainingError naming the prompts."""
    index = list(prompt_index) if prompt_index is not None else list(range(len(prompts)))
    try:
        scores = list(source(prompts, completions))
    except Exception as err:  # a user's function may raise anything; say which call failed
        raise TrainingError(f"the {what} function raised {type(err).__name__}: {err} (while scoring "
                            f"prompt indices {sorted(set(index))} of the prompt set)") from err
    return check_scores(scores, index, what=what)


def __getattr__(name: str) -> Any:
    """``RewardConfig``, this class's old name, still imports for one release (with a DeprecationWarning): it
    was easy to confuse with :class:`alignlab.outer.reward.RewardModelConfig`, the config that trains a reward model."""
    if name == "RewardConfig":
        warnings.warn("alignlab.outer.online.rewards.RewardConfig is renamed RewardSourceConfig; the old name will be "
                      "removed in the next release", DeprecationWarning, stacklevel=2)
        return RewardSourceConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
