"""RL4F (Akyürek et al. 2023, "RL4F: Generating Natural Language Feedback with Reinforcement Learning for
Repairing Model Outputs"): a small critic LM writes a critique of a frozen LM's answer, the frozen LM revises its
answer given the critique, and the critic is trained so that the revisions get better.

For a question x the frozen LM answers ŷ = LLM(x) once (``answer_temperature``); the critic samples a critique
c ~ p_CRIT(c | x, ŷ); the frozen LM revises, y' = LLM(x, ŷ, c) (``revise_template``: the toy world's refinement
skill by default). Training (Sec. 3):

    warm start:  max  E log p_CRIT(c* | x, ŷ)          c* a good critique (here: ``warm_start`` writes it; on the
                                                        world, the judge's feedback on the fault ŷ shows)
    RL:          max  E_{c ~ p_CRIT}[ r(x, y') − r(x, ŷ) ] − β KL(p_CRIT ‖ p_warm)

with r the reward source (the world judge's true reward by default), so the critic's reward is the reward gain
its critique buys. The paper used PPO; the RL stage here is GRPO on the one online loop
(:mod:`alignlab.outer.blackbox.steer`). A critique equal to ``keep_text`` leaves the answer as it is (gain 0, no
revision asked): a critic can learn that a good answer needs no change.

Example::

    >>> print(critique_request("What is 3 plus 4?", "3 plus 4 is 8."))
    Question: What is 3 plus 4?
    Answer: 3 plus 4 is 8.
    What is wrong with this answer?
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alignlab.core.records import ConversationRecord, Message
from alignlab.core.trainer import TrainResult
from alignlab.errors import ConfigError
from alignlab.outer.blackbox.steer import FrozenLM, SteeringConfig, train_steering
from alignlab.outer.online.rewards import (
    MessageReward,
    RewardSource,
    as_source,
    build_reward,
    call_source,
    import_function,
)

__all__ = ["Case", "RL4FConfig", "RevisionReward", "critique_and_revise", "critique_request", "train_rl4f",
           "world_feedback"]

CRITIQUE_TEMPLATE = "Question: {question}\nAnswer: {answer}\nWhat is wrong with this answer?"
REVISE_TEMPLATE = "Question: {question}\nAnswer: {answer}\nFeedback: {critique}\nImprove the answer."  # the world's


def critique_request(question: str, answer: str, template: str = CRITIQUE_TEMPLATE) -> str:
    """The critic's user turn."""
    return template.format(question=question, answer=answer)


def world_feedback(question: str, answer: str, keep_text: str = "The answer is fine.") -> str:
    """The toy world's feedback on ``answer``: the judge's wording of the first fault it shows
    (:func:`alignlab.world.skills.protocols.feedback_text`), or ``keep_text`` when it shows none.

    Example::

        >>> world_feedback("What is 3 plus 4?", "3 plus 4 is 8.")
        'The arithmetic is wrong.'
        >>> world_feedback("What is 3 plus 4?", "3 plus 4 is 7.")
        'The answer is fine.'
    """
    from alignlab.world.families import parse_prompt
    from alignlab.world.skills.constitution import answer_faults
    from alignlab.world.skills.protocols import feedback_text

    prompt = parse_prompt(question)
    faults = sorted(answer_faults(prompt, answer))
    return feedback_text(faults[0], prompt) if faults else keep_text


@dataclass
class RL4FConfig(SteeringConfig):
    """RL4F: train a small critic whose critiques make a frozen LM revise its answers better."""

    output: str = "runs/rl4f"
    warm_start: str = "world"
    """who writes the warm-start critiques: world (the toy world's judge names the answer's fault) or
    'module:function' with signature (question: str, answer: str) -> str"""
    keep_text: str = "The answer is fine."
    """the critique that keeps the answer unchanged (no revision asked)"""
    answer_temperature: float = 1.0
    """temperature of the frozen LM's first answers (they are drawn once, before training)"""
    critique_template: str = CRITIQUE_TEMPLATE
    """the critic's prompt ({question}, {answer})"""
    revise_template: str = REVISE_TEMPLATE
    """the frozen LM's revision prompt ({question}, {answer}, {critique}); the default is the world's refinement skill"""
    frozen_max_tokens: int = 40


@dataclass(frozen=True)
class Case:
    """A question, the frozen LM's first answer and its score."""

    prompt: list[Message]
    answer: str
    score: float

    @property
    def question(self) -> str:
        return " ".join(m["content"] for m in self.prompt if m.get("role") == "user")


class RevisionReward(MessageReward):
    """RL4F's reward source: the frozen LM revises each case's answer with the sampled critique; the reward is
    ``judge(revision) − judge(first answer)`` (0 when the critique is ``keep_text``).

    ``cases`` maps the critic's prompt text to its :class:`Case`; ``last_revisions`` keeps the latest call's."""

    def __init__(self, frozen: FrozenLM, judge: RewardSource, cases: dict[str, Case], *,
                 keep_text: str = "The answer is fine.", template: str = REVISE_TEMPLATE):
        self.frozen, self.judge, self.cases, self.keep_text, self.template = frozen, judge, cases, keep_text, template
        self.last_revisions: list[str] = []

    def __call__(self, prompts: list[list[Message]], critiques: list[str]) -> list[float]:
        cases = [self.cases[p[-1]["content"]] for p in prompts]
        revisions = revise(self.frozen, cases, critiques, keep_text=self.keep_text, template=self.template)
        self.last_revisions = revisions
        after = call_source(self.judge, [c.prompt for c in cases], revisions, what="judge")
        return [float(a) - c.score for a, c in zip(after, cases)]


def revise(frozen: FrozenLM, cases: list[Case], critiques: list[str], *, keep_text: str = "The answer is fine.",
           template: str = REVISE_TEMPLATE) -> list[str]:
    """The frozen LM's revision of each case's answer given its critique (the answer itself for ``keep_text``)."""
    asked = [i for i, c in enumerate(critiques) if c.strip() != keep_text.strip()]
    prompts = [[{"role": "user", "content": template.format(question=cases[i].question, answer=cases[i].answer,
                                                            critique=critiques[i].strip())}] for i in asked]
    revisions = [c.answer for c in cases]
    for i, text in zip(asked, frozen(prompts)):
        revisions[i] = text
    return revisions


def first_answers(frozen: FrozenLM, prompts: list[list[Message]], judge: RewardSource, *,
                  temperature: float) -> list[Case]:
    """The frozen LM's first answer to each prompt (sampled at ``temperature``), scored by ``judge``."""
    settings = frozen.temperature
    frozen.temperature = temperature
    try:
        answers = frozen(prompts)
    finally:
        frozen.temperature = settings
    scores = call_source(judge, prompts, answers, what="judge").tolist()
    return [Case(p, a, s) for p, a, s in zip(prompts, answers, scores)]


def critique_and_revise(frozen: FrozenLM, critic, cases: list[Case], *, max_tokens: int = 16,
                        keep_text: str = "The answer is fine.", critique_template: str = CRITIQUE_TEMPLATE,
                        revise_template: str = REVISE_TEMPLATE) -> tuple[list[str], list[str]]:
    """(critiques, revisions): ``critic`` (an LM of the LM interface, or a function (question, answer) -> critique)
    critiques each case greedily, then the frozen LM revises."""
    if callable(critic) and not hasattr(critic, "generate"):
        critiques = [critic(c.question, c.answer) for c in cases]
    else:
        requests = [[{"role": "user", "content": critique_request(c.question, c.answer, critique_template)}]
                    for c in cases]
        critiques = critic.generate(requests, max_tokens=max_tokens, temperature=0.0)
    return critiques, revise(frozen, cases, critiques, keep_text=keep_text, template=revise_template)


def warm_start_writer(config: RL4FConfig) -> Callable[[str, str], str]:
    """The function that writes the warm start's critique of (question, answer)."""
    if config.warm_start == "world":
        return lambda question, answer: world_feedback(question, answer, config.keep_text)
    if ":" not in config.warm_start:
        raise ConfigError(f"warm_start must be 'world' or 'module:function', got '{config.warm_start}'")
    return import_function(config.warm_start)


def train_rl4f(config: RL4FConfig, *, frozen: FrozenLM | None = None, judge: RewardSource | None = None,
               model=None, tokenizer=None) -> TrainResult:
    """Train a critic for ``config.frozen`` on the questions of ``config.data`` (any prompt format).

    The frozen LM answers every question once; the critic is warm-started on ``warm_start``'s critiques of those
    answers, then trained by RL with the revision's reward gain. ``frozen`` / ``judge`` may be given directly.

    Example::

        >>> train_rl4f(RL4FConfig(frozen="runs/base", model=ModelConfig("runs/base")))   # doctest: +SKIP
    """
    from alignlab.core.data import load_records

    records, _ = load_records(config.data, "prompt", seed=config.train.seed)
    frozen = frozen or FrozenLM.from_config(config)
    judge = as_source(judge) if judge is not None else build_reward(config.reward)
    cases = first_answers(frozen, [r.prompt for r in records], judge, temperature=config.answer_temperature)
    by_request = {critique_request(c.question, c.answer, config.critique_template): c for c in cases}
    prompts = [[{"role": "user", "content": text}] for text in by_request]
    write = warm_start_writer(config) if config.warm_start_steps else None
    targets = [ConversationRecord(prompt=p, completion=write(c.question, c.answer))
               for p, c in zip(prompts, by_request.values())] if write else []
    reward = RevisionReward(frozen, judge, by_request, keep_text=config.keep_text, template=config.revise_template)
    return train_steering(config, prompts, targets, reward, model=model, tokenizer=tokenizer)
