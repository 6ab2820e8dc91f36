"""Directional Stimulus Prompting (Li et al. 2023, "Guiding Large Language Models via Directional Stimulus
Prompting"): a small policy LM writes a hint for each input, and the hint goes into the prompt of a frozen LM.

For an input x the policy samples a stimulus z ~ p_POL(z | x) (here: keywords); the frozen LM answers
y = LLM(x, z) (the hint as a system message ``Hint: z`` before the conversation, by ``hint_template``). Training
(Sec. 2.2–2.3):

    SFT:  max  E_{(x, y*) ~ D} log p_POL(z* | x),    z* = keywords(y*)  (the paper extracts keywords of the
                                                     reference output; here the words of the good answer that
                                                     the question does not already contain)
    RL:   max  E_{z ~ p_POL(·|x)} [ r(x, LLM(x, z)) ] − β KL(p_POL ‖ p_SFT)

where r scores the frozen LM's answer (the world judge's true reward by default). The RL stage is GRPO on the
one online loop (:mod:`alignlab.outer.blackbox.steer`); the paper used PPO, and ``baseline`` picks RLOO or
REINFORCE instead. The data are conversations (question → good answer): the answers give the warm-start hints,
the questions are the RL prompts.

Example::

    >>> keywords("The capital of Zorbia is Vell.", "What is the capital of Zorbia?")
    'Vell'
    >>> with_hint([{"role": "user", "content": "Hi"}], "greet")[0]
    {'role': 'system', 'content': 'Hint: greet'}
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from alignlab.core.records import ConversationRecord, Message
from alignlab.core.trainer import TrainResult
from alignlab.outer.blackbox.steer import FrozenLM, SteeringConfig, train_steering
from alignlab.outer.online.rewards import MessageReward, RewardSource, as_source, build_reward, call_source

__all__ = ["DSPConfig", "HintReward", "answer_with_hints", "keywords", "train_dsp", "with_hint"]

# Words that carry no direction on their own (articles, auxiliaries, pronouns, prepositions).
STOPWORDS = frozenset({
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "of", "in", "on", "at",
    "to", "for", "from", "by", "with", "and", "or", "but", "not", "no", "it", "its", "this", "that", "these",
    "those", "there", "here", "i", "you", "he", "she", "we", "they", "me", "my", "your", "our", "their", "his",
    "her", "so", "as", "if", "than", "then"})


def keywords(answer: str, question: str = "", k: int = 3) -> str:
    """Up to ``k`` words of ``answer``, in order, that are neither stopwords nor words of ``question``.

    Example::

        >>> keywords("There are 12 provinces in Krothova.", "How many provinces does Krothova have?")
        '12'
    """
    seen = {w.lower() for w in re.findall(r"[\w']+", question)} | STOPWORDS
    picked: list[str] = []
    for word in re.findall(r"[\w']+", answer):
        if word.lower() not in seen and word not in picked:
            picked.append(word)
    return " ".join(picked[:k])


def with_hint(prompt: list[Message], hint: str, template: str = "Hint: {hint}") -> list[Message]:
    """The frozen LM's prompt: the hint as a system message before the conversation (any old system turn dropped)."""
    return [{"role": "system", "content": template.format(hint=hint.strip())},
            *[m for m in prompt if m.get("role") != "system"]]


@dataclass
class DSPConfig(SteeringConfig):
    """Directional Stimulus Prompting: train a small hint writer (SFT on keywords of good answers, then RL with the
    frozen LM's judged answer as reward)."""

    output: str = "runs/dsp"
    hint_keywords: int = 3
    """keywords per warm-start hint (words of the good answer the question does not contain)"""
    hint_template: str = "Hint: {hint}"
    """the system message the frozen LM sees ({hint}: the policy's text)"""


class HintReward(MessageReward):
    """DSP's reward source: the frozen LM answers each prompt with the hint, ``judge`` scores that answer.

    ``last_answers`` keeps the frozen LM's answers of the latest call (for logging and tests)."""

    def __init__(self, frozen: FrozenLM, judge: RewardSource, template: str = "Hint: {hint}"):
        self.frozen, self.judge, self.template = frozen, judge, template
        self.last_answers: list[str] = []

    def __call__(self, prompts: list[list[Message]], hints: list[str]) -> list[float]:
        self.last_answers = self.frozen([with_hint(p, h, self.template) for p, h in zip(prompts, hints)])
        return call_source(self.judge, prompts, self.last_answers, what="judge").tolist()


def answer_with_hints(frozen: FrozenLM, policy, prompts: list[list[Message]], *, max_tokens: int = 16,
                      template: str = "Hint: {hint}") -> tuple[list[str], list[str]]:
    """(hints, answers): the policy's greedy hint for each prompt (``policy``: an LM of the LM interface, or
    None for no hint at all), then the frozen LM's answer with it."""
    if policy is None:
        return [""] * len(prompts), frozen(prompts)
    hints = policy.generate(prompts, max_tokens=max_tokens, temperature=0.0)
    return hints, frozen([with_hint(p, h, template) for p, h in zip(prompts, hints)])


def train_dsp(config: DSPConfig, *, frozen: FrozenLM | None = None, judge: RewardSource | None = None,
              model=None, tokenizer=None) -> TrainResult:
    """Train a hint writer for ``config.frozen`` on ``config.data`` (conversations: question → good answer).

    ``frozen`` / ``judge`` may be given directly (e.g. a scripted LM, a plain function); the policy is saved in
    ``config.output``, its warm start in ``{output}/warm_start``.

    Example::

        >>> train_dsp(DSPConfig(frozen="runs/sft", model=ModelConfig("runs/base")))   # doctest: +SKIP
    """
    from alignlab.core.data import load_records

    records, _ = load_records(config.data, "conversation", seed=config.train.seed)
    targets = [ConversationRecord(prompt=r.prompt, completion=keywords(r.completion, _question(r.prompt),
                                                                       config.hint_keywords)) for r in records]
    targets = [t for t in targets if t.completion]
    frozen = frozen or FrozenLM.from_config(config)
    reward = HintReward(frozen, as_source(judge) if judge is not None else build_reward(config.reward), config.hint_template)
    return train_steering(config, [r.prompt for r in records], targets, reward, model=model, tokenizer=tokenizer)


def _question(prompt: list[Message]) -> str:
    return " ".join(m["content"] for m in prompt if m.get("role") == "user")
