"""Self-consistency (Wang et al. 2023): sample several answers (reasoning paths) and keep the most common final
answer. Accuracy as a function of the number of sampled paths, from one set of samples per prompt (the first k
of the same K draws, so the curve is nested and its points are comparable).

Answers are parsed by an ``extract`` function; an answer it cannot parse casts no vote, and a prompt whose every
answer is unparseable has no majority (counted wrong). The parse rate is reported beside every accuracy.

Example::

    >>> majority_vote(["7", "8", "7", None])
    ('7', 2)
    >>> majority_vote([None, None])
    (None, 0)
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alignlab.evaluate.interface import LM, Prompt


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, int]:
    """The most common parsed answer and its votes (ties: the one that appeared first); (None, 0) when none parsed."""
    counts = Counter(a for a in answers if a is not None)
    if not counts:
        return None, 0
    first = {a: i for i, a in reversed(list(enumerate(answers))) if a is not None}
    best = max(counts, key=lambda a: (counts[a], -first[a]))
    return best, counts[best]


def last_number(text: str) -> str | None:
    """The last integer in a text (an arithmetic answer's final result), or None.

    Example::

        >>> last_number("3 plus 4 is 7."), last_number("no digits")
        ('7', None)
    """
    found = re.findall(r"-?\d+", text)
    return found[-1] if found else None


@dataclass
class SelfConsistencyResult:
    """Accuracy by number of sampled paths, with standard errors and the parse rate of all samples."""

    accuracy: dict[int, float]
    stderr: dict[int, float]
    parse_rate: float
    samples: list[list[str]]
    """every prompt's K sampled texts"""


def self_consistency(lm: LM, prompts: Sequence[Prompt], truths: Sequence[str], *, ks: Sequence[int],
                     extract: Callable[[str], str | None], max_tokens: int = 64, temperature: float = 1.0,
                     seed: int = 0) -> SelfConsistencyResult:
    """Sample max(ks) answers per prompt once, then the majority vote's accuracy over the first k, for each k."""
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive numbers of samples, got {list(ks)}")
    k_max = max(ks)
    repeated = [p for p in prompts for _ in range(k_max)]
    texts = lm.generate(repeated, max_tokens=max_tokens, temperature=temperature, seed=seed)
    samples = [texts[i * k_max:(i + 1) * k_max] for i in range(len(prompts))]
    parsed = [[extract(t) for t in row] for row in samples]
    accuracy, stderr = {}, {}
    for k in sorted(ks):
        correct = [float(majority_vote(row[:k])[0] == truth) for row, truth in zip(parsed, truths)]
        p = sum(correct) / len(correct)
        accuracy[k], stderr[k] = p, math.sqrt(p * (1 - p) / len(correct))
    parse_rate = sum(a is not None for row in parsed for a in row) / (len(parsed) * k_max)
    return SelfConsistencyResult(accuracy, stderr, parse_rate, samples)
