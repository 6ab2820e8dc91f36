"""Consistency checks as proxy tasks (Fluri et al. 2023, "Evaluating Superhuman Models with Consistency Checks"):
find a model's errors without knowing the right answers.

Two questions whose answers must agree — ``a + b`` and ``b + a``, one fact asked two ways — are asked
separately; when the parsed answers differ, at least one is wrong, so the pair is flagged. Where the truth is
known (the toy world), a flag's precision (flagged pairs that really hold an error) and recall (pairs holding
an error that got flagged) say how much oversight a check buys. A check cannot see an error both answers share.

Example::

    >>> flags = [True, False, True, False]
    >>> has_error = [True, True, False, False]
    >>> precision_recall(flags, has_error)
    (0.5, 0.5)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from alignlab.evaluate.interface import LM, Prompt


@dataclass
class ConsistencyPair:
    """Two prompts whose answers must agree, with the check's name and (on the world) each side's truth."""

    check: str
    left: Prompt
    right: Prompt
    truth: tuple[str, str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def precision_recall(flags: Sequence[bool], has_error: Sequence[bool]) -> tuple[float | None, float | None]:
    """Precision and recall of flags against the pairs that truly hold an error (None where undefined)."""
    flagged = sum(flags)
    errors = sum(has_error)
    hits = sum(f and e for f, e in zip(flags, has_error))
    return (hits / flagged if flagged else None, hits / errors if errors else None)


def run_checks(lm: LM, pairs: Sequence[ConsistencyPair], extract: Callable[[str], str | None], *,
               max_tokens: int = 48, temperature: float = 0.0, seed: int = 0) -> dict[str, Any]:
    """Ask both sides of every pair, flag disagreements; per check: flag rate, parse rate, and with truths the
    error rate, precision and recall. A pair with an unparseable side is not flagged (counted as unparsed)."""
    texts = lm.generate([p.left for p in pairs] + [p.right for p in pairs], max_tokens=max_tokens,
                        temperature=temperature, seed=seed)
    n = len(pairs)
    rows = []
    for pair, left, right in zip(pairs, texts[:n], texts[n:]):
        a, b = extract(left), extract(right)
        row = {"check": pair.check, "left": left, "right": right, "parsed": a is not None and b is not None,
               "flagged": a is not None and b is not None and a != b, **pair.meta}
        if pair.truth is not None:
            row["has_error"] = a != pair.truth[0] or b != pair.truth[1]
        rows.append(row)
    summary = {}
    for check in sorted({r["check"] for r in rows}):
        mine = [r for r in rows if r["check"] == check]
        entry = {"pairs": len(mine), "parse_rate": sum(r["parsed"] for r in mine) / len(mine),
                 "flag_rate": sum(r["flagged"] for r in mine) / len(mine)}
        if all("has_error" in r for r in mine):
            flags, errors = [r["flagged"] for r in mine], [r["has_error"] for r in mine]
            entry["error_rate"] = sum(errors) / len(mine)
            entry["precision"], entry["recall"] = precision_recall(flags, errors)
        summary[check] = entry
    return {"summary": summary, "rows": rows}


def world_pairs(world, *, limit: int | None = None) -> list[ConsistencyPair]:
    """The toy world's checks with their truths: commutativity of plus and times on its held-out arithmetic
    prompts, and each held-out fact question against the same fact asked with another template."""
    from alignlab.world.families import ARITHMETIC_TEMPLATES, FACT_TEMPLATES

    pairs = []
    for p in world.eval_prompts(["arithmetic", "facts"]):
        if p.family == "arithmetic" and p.meta["op"] in ("plus", "times") and p.meta["a"] != p.meta["b"]:
            a, b, op = p.meta["a"], p.meta["b"], p.meta["op"]
            swapped = ARITHMETIC_TEMPLATES[0].format(a=b, op=op, b=a)
            pairs.append(ConsistencyPair("commutativity", p.messages, [{"role": "user", "content": swapped}],
                                         (p.answer, p.answer), {"question": p.text, "swapped": swapped}))
        elif p.family == "facts":
            templates = FACT_TEMPLATES[p.meta["attribute"]]
            other = templates[(p.meta["template"] + 1) % len(templates)].format(country=p.meta["country"])
            if other != p.text:
                pairs.append(ConsistencyPair("paraphrase", p.messages, [{"role": "user", "content": other}],
                                             (p.answer, p.answer), {"question": p.text, "paraphrase": other}))
    return pairs[:limit] if limit else pairs


def world_answer_parser(world) -> Callable[[str], str | None]:
    """A parser of the value a world answer states: its last number, else the last word of the world's answer
    vocabulary it mentions (every capital, river, colour and animal; not the truth of any one question); None for
    an answer that states none ("I don't know.").

    Example::

        >>> from alignlab.world.datasets import World
        >>> parse = world_answer_parser(World(0, "small"))
        >>> parse("Gexa is the capital of Volmark."), parse("There are 10 provinces."), parse("I don't know.")
        ('Gexa', '10', None)
    """
    from alignlab.world.families import ATTRIBUTES

    vocabulary = {str(c.value(a)).lower(): str(c.value(a)) for c in world.kb.countries for a in ATTRIBUTES}

    def parse(text: str) -> str | None:
        numbers = re.findall(r"-?\d+", text)
        if numbers:
            return numbers[-1]
        named = [vocabulary[w.lower()] for w in re.findall(r"[A-Za-z]+", text) if w.lower() in vocabulary]
        return named[-1] if named else None

    return parse
