"""What black-box steering methods share: a frozen LM behind the LM interface, an SFT warm start of the small
policy, and the online RL stage whose reward runs the frozen LM.

A *steering* method trains a small policy LM whose text (a hint, a critique) goes into the prompt of a frozen LM
that is never updated: a local model directory or an OpenAI-compatible server
(:func:`alignlab.evaluate.lm.load_lm`). Training has two stages, both on alignlab's one loop:

1. warm start: SFT of the policy on target texts the method derives from good data (``warm_start_steps``;
   the run is ``{output}/warm_start``);
2. RL: GRPO (or RLOO / REINFORCE by ``baseline``) on :class:`alignlab.outer.online.rollout.OnlineTrainer`, whose
   reward source is the method's: it puts each sampled steering text into the frozen LM's prompt, lets the frozen
   LM answer, and scores that answer with ``reward`` (a reward source: the world judge, a reward model, a
   function). The policy is saved in ``{output}``.

The steering text's reward therefore depends on the frozen LM only through its generated text: nothing flows
back into it (:class:`FrozenLM` refuses gradients on a local model).

Example::

    >>> config = SteeringConfig(frozen="http://127.0.0.1:8000/v1#frozen")
    >>> config.reward.source, config.frozen_temperature
    ('world', 0.0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from alignlab.core.generation import GenerationConfig
from alignlab.core.records import ConversationRecord, Message
from alignlab.core.trainer import TrainConfig
from alignlab.errors import ConfigError
from alignlab.evaluate.interface import LM
from alignlab.outer.online.grpo import GroupPolicyGradient, GRPOConfig
from alignlab.outer.online.rewards import RewardSource, RewardSourceConfig
from alignlab.outer.online.rollout import OnlineLoopConfig, OnlineTrainer

__all__ = ["FrozenLM", "SteeringConfig", "SteeringTrainer", "train_steering", "warm_start"]


@dataclass
class SteeringConfig(GRPOConfig):
    """Settings every black-box steering method shares: the frozen LM, the warm start, the RL stage."""

    frozen: str = ""
    """the frozen LM: a model directory, an alignlab run dir or an OpenAI-compatible server URL
    (http[+chat]://host:port/v1[#model]); it is only ever asked to generate"""
    frozen_max_tokens: int = 48
    """tokens the frozen LM generates per answer"""
    frozen_temperature: float = 0.0
    """the frozen LM's sampling temperature (0 = greedy: the reward depends on the steering text alone)"""
    frozen_batch_size: int = 32
    """prompts per generate call of a local frozen LM"""
    warm_start_steps: int = 40
    """SFT steps on the derived targets before RL (0 = start RL from model.name_or_path as it is)"""
    warm_start_lr: float = 3e-4
    """the warm start's learning rate"""
    warm_start_batch_size: int = 8
    """examples per warm-start step"""
    reward: RewardSourceConfig = field(default_factory=lambda: RewardSourceConfig(source="world"))
    """scores the frozen LM's answer (default: the toy world's judge, true reward)"""
    train: OnlineLoopConfig = field(default_factory=lambda: OnlineLoopConfig(max_steps=30, lr=1e-4))
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=16))
    prompts_per_step: int = 4
    group_size: int = 4
    minibatch_size: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.warm_start_steps < 0:
            raise ValueError(f"warm_start_steps must be >= 0, got {self.warm_start_steps}")
        if self.frozen_temperature < 0:
            raise ValueError(f"frozen_temperature must be >= 0, got {self.frozen_temperature}")


class FrozenLM:
    """A frozen LM as a function ``prompts -> texts``: the LM interface's ``generate`` with fixed settings.

    A local model's parameters stop requiring gradients; each call uses the next seed, so sampled answers
    (``temperature > 0``) differ from call to call yet repeat from run to run. ``calls`` counts the calls.

    Example::

        >>> frozen = FrozenLM(load_lm("http+chat://127.0.0.1:8000/v1"), max_tokens=32)   # doctest: +SKIP
        >>> frozen([[{"role": "user", "content": "What is 2 plus 3?"}]])                   # doctest: +SKIP
        ['2 plus 3 is 5.']
    """

    def __init__(self, lm: LM, *, max_tokens: int = 48, temperature: float = 0.0, seed: int = 0):
        self.lm, self.max_tokens, self.temperature, self.seed = lm, max_tokens, temperature, seed
        if (model := getattr(lm, "model", None)) is not None and hasattr(model, "requires_grad_"):
            model.eval().requires_grad_(False)
        self.calls = 0

    @classmethod
    def from_config(cls, config: SteeringConfig) -> FrozenLM:
        from alignlab.evaluate.lm import load_lm

        if not config.frozen:
            raise ConfigError("a black-box steering method needs `frozen` (the frozen LM: a model directory or a "
                              "server URL such as http+chat://127.0.0.1:8000/v1)")
        local = {"batch_size": config.frozen_batch_size}
        lm = load_lm(config.frozen, **({} if "://" in config.frozen else local))
        return cls(lm, max_tokens=config.frozen_max_tokens, temperature=config.frozen_temperature,
                   seed=config.train.seed)

    def __call__(self, prompts: list[list[Message]]) -> list[str]:
        if not prompts:
            return []
        self.calls += 1
        return self.lm.generate(prompts, max_tokens=self.max_tokens, temperature=self.temperature,
                                seed=self.seed * 1_000_003 + self.calls)


class SteeringTrainer(OnlineTrainer):
    """The online trainer over prompts given in memory (the method builds them: a critique request quotes the
    frozen LM's answer) instead of ``config.data``."""

    def __init__(self, config: SteeringConfig, prompts: list[list[Message]], **kwargs):
        self.given_prompts = prompts
        super().__init__(config, GroupPolicyGradient(config), **kwargs)

    def _load_prompts(self) -> tuple[list[list[Message]], list[list[int]]]:
        from alignlab.core.generation import encode_prompts

        cfg = self.config
        if len(self.given_prompts) < cfg.prompts_per_step:
            raise ConfigError(f"{len(self.given_prompts)} prompts are fewer than prompts_per_step={cfg.prompts_per_step}")
        keep = cfg.data.max_prompt_length or cfg.data.max_length // 2
        return self.given_prompts, [ids[-keep:] for ids in encode_prompts(self.tokenizer, self.given_prompts)]


def warm_start(config: SteeringConfig, targets: list[ConversationRecord]) -> str:
    """SFT of ``config.model`` on ``targets`` (policy prompt → the text to write) for ``warm_start_steps``, as the
    run ``{output}/warm_start``; returns the model to start RL from (``model.name_or_path`` when no steps)."""
    if config.warm_start_steps == 0:
        return config.model.name_or_path
    from alignlab.core.models import load_causal_lm, load_tokenizer
    from alignlab.core.run import finish_run, start_run
    from alignlab.core.tokenize import CompletionCollator, ensure_chat_template
    from alignlab.core.trainer import train
    from alignlab.outer.sft import SFTConfig, SFTObjective, encode_sft

    loop = config.train
    sft = SFTConfig(model=config.model, data=config.data, output=str(Path(config.output) / "warm_start"),
                    train=TrainConfig(max_steps=config.warm_start_steps, lr=config.warm_start_lr,
                                      batch_size=config.warm_start_batch_size, scheduler="constant",
                                      seed=loop.seed, overwrite=loop.overwrite, progress=loop.progress,
                                      mixed_precision=loop.mixed_precision))
    out = start_run(sft, sft.output)
    tokenizer = load_tokenizer(config.model.name_or_path, trust_remote_code=config.model.trust_remote_code)
    ensure_chat_template(tokenizer)
    examples = encode_sft(tokenizer, targets, sft, "warm-start targets")
    model = load_causal_lm(config.model.name_or_path, dtype=config.model.dtype,
                           trust_remote_code=config.model.trust_remote_code)
    result = train(model, SFTObjective(), examples, CompletionCollator(tokenizer.pad_token_id), sft.train, out)
    finish_run(model, tokenizer, result)
    return str(out)


def train_steering(config: SteeringConfig, prompts: list[list[Message]], targets: list[ConversationRecord],
                   reward: RewardSource, **kwargs):
    """Warm start on ``targets``, then GRPO on ``prompts`` with ``reward`` (the method's frozen-LM reward)."""
    from alignlab.core.run import start_run

    start_run(config, config.output)  # refuse a bad run directory before the warm start writes into it
    start = warm_start(config, targets)
    rl = dataclasses.replace(config, model=dataclasses.replace(config.model, name_or_path=start))
    return SteeringTrainer(rl, prompts, sources={"reward": reward}, **kwargs).train()
