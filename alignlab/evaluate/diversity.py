"""How varied is a set of texts (the prompts an attack found, a policy's answers to one prompt)? distinct-n, BLEU
and self-BLEU, on word tokens.

- **distinct-n** (Li et al. 2016, "A Diversity-Promoting Objective Function for Neural Conversation Models", §4.3):
  the number of distinct n-grams over all texts divided by the total number of n-grams. 1 when no n-gram repeats.
- **BLEU** of one hypothesis against references (Papineni et al. 2002): the geometric mean of the clipped n-gram
  precisions p_1..p_N (uniform weights) times the brevity penalty BP = min(1, exp(1 − r/c)), c the hypothesis's
  length and r the reference length closest to it. A precision whose clipped count is 0 counts as ε/total, except the unigram one,
  which makes BLEU 0 (ε = 0.1: NLTK's ``SmoothingFunction().method1``, which the tests compare against).
- **self-BLEU** (Zhu et al. 2018, "Texygen", §2.2): the mean over texts of the BLEU of each text against all the
  others. 1 when every text (of at least N words) is a copy of another; lower is more diverse.

Texts are split into lower-cased word and punctuation tokens (``\\w+|[^\\w\\s]``).

Example::

    >>> distinct_n(["a b a b"], 1), distinct_n(["a b a b"], 2)
    (0.5, 0.6666666666666666)
    >>> round(self_bleu(["the cat sat", "the cat sat"], max_n=2), 6)
    1.0
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

WORD = re.compile(r"\w+|[^\w\s]")
SMOOTHING_EPSILON = 0.1  # NLTK SmoothingFunction().method1's ε


def words(text: str) -> list[str]:
    """The lower-cased word and punctuation tokens diversity is measured on."""
    return WORD.findall(text.lower())


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over ``texts`` (0 when the texts hold no n-gram)."""
    grams = [g for t in texts for g in ngrams(words(t), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis: Sequence[str], references: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Sentence BLEU of token list ``hypothesis`` against token lists ``references`` (weights 1/max_n each,
    method-1 smoothing); 0 for an empty hypothesis or no references."""
    c = len(hypothesis)
    if c == 0 or not references:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = Counter(ngrams(hypothesis, n))
        total = max(1, sum(counts.values()))  # a hypothesis shorter than n: precision 0/1 (as NLTK counts it)
        max_ref: Counter = Counter()
        for ref in references:  # clip each n-gram's count by its largest count in any one reference
            max_ref |= Counter(ngrams(ref, n))
        clipped = sum(min(k, max_ref[g]) for g, k in counts.items())
        if n == 1 and clipped == 0:  # no word in common: BLEU 0, unsmoothed (NLTK does the same)
            return 0.0
        log_precision += math.log((clipped or SMOOTHING_EPSILON) / total) / max_n
    r = min((len(ref) for ref in references), key=lambda length: (abs(length - c), length))
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(log_precision)


def self_bleu(texts: Sequence[str], max_n: int = 4) -> float:
    """Mean BLEU of each text against all the others (0 for fewer than two texts)."""
    tokens = [words(t) for t in texts]
    if len(tokens) < 2:
        return 0.0
    return sum(bleu(h, tokens[:i] + tokens[i + 1:], max_n) for i, h in enumerate(tokens)) / len(tokens)


def diversity_report(texts: Sequence[str]) -> dict[str, float | int | None]:
    """distinct-1, distinct-2, self-BLEU (4-gram) and the count of distinct texts; a measure the texts are too few
    for (no text; self-BLEU: fewer than two) is None."""
    return {"n": len(texts), "unique": len(set(texts)),
            "distinct_1": distinct_n(texts, 1) if texts else None, "distinct_2": distinct_n(texts, 2) if texts else None,
            "self_bleu": self_bleu(texts) if len(texts) > 1 else None}


def per_prompt_diversity(answers: Sequence[str], n_prompts: int) -> dict[str, float]:
    """How varied a policy's answers to the same prompt are, averaged over prompts: per prompt, the fraction of its
    answers that are distinct texts, distinct-1, distinct-2 and self-BLEU (4-gram) over its answers; then the mean
    over prompts. Answer k is to prompt k % ``n_prompts`` (the layout of
    :func:`~alignlab.world.model_eval.sample_answers`); every prompt needs at least two answers.

    Example::

        >>> per_prompt_diversity(["a b c d", "a b c d", "a b c d", "e f g h"], 2)  # prompt 0: one answer twice
        {'unique': 0.75, 'distinct_1': 0.75, 'distinct_2': 0.75, 'self_bleu': 0.5}
    """
    if n_prompts < 1 or len(answers) < 2 * n_prompts or len(answers) % n_prompts:
        raise ValueError(f"per-prompt diversity needs at least two answers per prompt, laid out prompt k % "
                         f"{n_prompts}; got {len(answers)} answers")
    groups = [list(answers[i::n_prompts]) for i in range(n_prompts)]
    per_prompt = {"unique": [len(set(g)) / len(g) for g in groups],
                  "distinct_1": [distinct_n(g, 1) for g in groups], "distinct_2": [distinct_n(g, 2) for g in groups],
                  "self_bleu": [self_bleu(g) for g in groups]}
    return {name: sum(values) / n_prompts for name, values in per_prompt.items()}
