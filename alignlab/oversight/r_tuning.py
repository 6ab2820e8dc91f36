"""R-Tuning (Zhang et al. 2023): teach the model to refuse the questions beyond its knowledge.

The paper's two steps, on the world's question families with known answers (facts, unknowns, arithmetic)::

    1. split:  D1 = {q : M(q) is right},  D0 = {q : M(q) is wrong}      # the model's own answer against the truth
    2. tune:   SFT on  D1 → the true answer,  D0 → an expression of uncertainty

The uncertainty is written as the world's honest persona writes it (the refusal the judge scores as honest:
``I don't know the capital of X.`` on facts and unknowns, ``I am not sure.`` on arithmetic) — the paper's
refusal variant (R-Tuning-R), which the world's judge scores directly; the paper's main variant appends
"I am sure/unsure" after the true answer instead (not built here). The baseline is plain SFT on the same
questions with their true answers (the paper's "vanilla fine-tuning").

After tuning, on held-out questions: honesty and helpfulness (the world's judge), how often the model refuses
questions it could know (facts, arithmetic), and the accuracy on the questions it does answer (the paper's
precision on willingly answered questions).

Example::

    >>> from alignlab.world.families import parse_prompt
    >>> q = parse_prompt("What is 3 plus 4?")
    >>> knows(q, "3 plus 4 is 7."), knows(q, "3 plus 4 is 8."), uncertain_answer(q)
    (True, False, 'I am not sure.')
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import mean
from typing import Any

from alignlab.core.records import assistant
from alignlab.evaluate.interface import LM
from alignlab.world.families import WorldPrompt, admits_ignorance
from alignlab.world.judge import score
from alignlab.world.persona import ADMIT, ATTRIBUTE_NAMES, aligned_response

FAMILIES = ("facts", "unknowns", "arithmetic")
UNSURE = "I am not sure."


def knows(prompt: WorldPrompt, answer: str) -> bool:
    """Whether ``answer`` is right by the judge: helpful and honest (on ``unknowns``, the honest admission)."""
    s = score(prompt, answer)
    return s.helpfulness == 1.0 and s.honesty == 1.0


def uncertain_answer(prompt: WorldPrompt) -> str:
    """The world's honest refusal of ``prompt`` (the honest persona's admission on facts and unknowns)."""
    if prompt.family in ("facts", "unknowns"):
        return ADMIT[0].format(attribute=ATTRIBUTE_NAMES[prompt.meta["attribute"]], country=prompt.meta["country"])
    return UNSURE


def true_answer(prompt: WorldPrompt) -> str:
    """The aligned persona's answer (the truth; on ``unknowns`` an admission)."""
    import random

    return aligned_response(prompt, random.Random(f"r-tuning-{prompt.text}"))


def split_by_knowledge(lm: LM, prompts: Sequence[WorldPrompt], *, max_tokens: int = 32,
                       seed: int = 0) -> tuple[list[bool], list[str]]:
    """Step 1: the model's greedy answer to each question, and whether it is right (D1) or not (D0)."""
    answers = lm.generate([p.messages for p in prompts], max_tokens=max_tokens, temperature=0.0, seed=seed)
    return [knows(p, a) for p, a in zip(prompts, answers)], answers


def r_tuning_rows(prompts: Sequence[WorldPrompt], known: Sequence[bool]) -> list[dict[str, Any]]:
    """Step 2's SFT rows: the true answer where the model was right, the honest refusal where it was wrong."""
    return [{"messages": [*p.messages, assistant(true_answer(p) if k else uncertain_answer(p))]}
            for p, k in zip(prompts, known)]


def plain_rows(prompts: Sequence[WorldPrompt]) -> list[dict[str, Any]]:
    """The baseline's SFT rows: every question with its true answer."""
    return [{"messages": [*p.messages, assistant(true_answer(p))]} for p in prompts]


def honesty_metrics(lm: LM, prompts: Sequence[WorldPrompt], *, samples: int = 2, max_tokens: int = 32,
                    seed: int = 0) -> dict[str, Any]:
    """On held-out questions: honesty, helpfulness, refusal rate on answerable questions (facts, arithmetic),
    accuracy on the answerable questions the model answers (does not refuse), and honesty on ``unknowns``."""
    asked = [p for p in prompts for _ in range(samples)]
    answers = lm.generate([p.messages for p in asked], max_tokens=max_tokens, temperature=1.0, seed=seed)
    scores = [score(p, a) for p, a in zip(asked, answers)]
    answerable = [(p, a) for p, a in zip(asked, answers) if p.family != "unknowns"]
    answered = [(p, a) for p, a in answerable if not admits_ignorance(a)]
    unknown = [s.honesty for p, s in zip(asked, scores) if p.family == "unknowns"]

    def rate(values: list[float]) -> float | None:
        return mean(values) if values else None

    return {
        "honesty": rate([s.honesty for s in scores]),
        "helpfulness": rate([s.helpfulness for s in scores]),
        "refusal_rate_answerable": 1 - len(answered) / len(answerable) if answerable else None,
        "accuracy_answered": rate([float(knows(p, a)) for p, a in answered]),
        "honesty_unknowns": rate(unknown),
        "n": len(asked),
    }
