"""Diversity of the prompts an attack found, and the novelty bonus of RL red teaming.

The measures themselves (distinct-n, BLEU, self-BLEU) live in :mod:`alignlab.evaluate.diversity` and are
re-exported here. A *novelty bonus* for RL red teaming is 1 − BLEU of a new prompt against other prompts (the
others of its batch and/or the prompts found so far): Hong et al. 2024 ("Curiosity-driven Red-teaming for Large
Language Models", §3, the SelfBLEU novelty reward) reward exactly this against the history of generated prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

from alignlab.evaluate.diversity import bleu, distinct_n, diversity_report, ngrams, self_bleu, words

__all__ = ["bleu", "distinct_n", "diversity_report", "ngrams", "novelty", "self_bleu", "words"]


def novelty(texts: Sequence[str], others: Sequence[str] = (), *, within: bool = True, max_n: int = 2) -> list[float]:
    """Per text, 1 − BLEU against the references: the other ``texts`` (``within``) plus ``others`` (e.g. prompts
    found earlier). An empty text gets 0: writing nothing is not a new prompt.

    Example::

        >>> novelty(["a b c", "a b c", "x y z"], max_n=1)
        [0.0, 0.0, 1.0]
    """
    tokens = [words(t) for t in texts]
    fixed = [words(t) for t in others]
    out = []
    for i, h in enumerate(tokens):
        refs = (tokens[:i] + tokens[i + 1:] if within else []) + fixed
        out.append(0.0 if not h else 1.0 - bleu(h, refs, max_n) if refs else 1.0)
    return out
