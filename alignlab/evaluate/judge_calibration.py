"""Judges measured against a known truth: on the toy world, whose true reward is a program, every judge —
a model acting as judge (local or a server), the world's simulated annotators, a committee — is scored on
pairs of replies whose true rewards differ.

Per judge, each pair is judged in both orders (a first, then b first):

- **agreement**: the share of pairs whose combined verdict (both orders; a verdict that flips is a tie, as in
  :func:`alignlab.evaluate.judge.swap_rule`) picks the reply with the higher true reward, a tie counting half;
- **position bias**: the share of single-order verdicts that pick the reply shown first (0.5 = none), and the
  share of pairs whose verdict flips with the order (inconsistency);
- **length bias**: the share of decisive verdicts that pick the longer reply, beside the share of those pairs
  where the longer reply is truly better — the gap is the judge's own pull towards length;
- **parse failures**: verdicts that could not be read, counted and left out (never guessed).

A *committee* is the majority of its members' combined verdicts (no majority: tie). Every share has a 95%
Wilson interval. A model judges in one of two ways: ``generate`` (it writes a verdict in MT-bench's format,
:data:`alignlab.evaluate.judge.PAIR`) or ``likelihood`` (the likelier of the verdict tokens ``[[A]]``,
``[[B]]``, ``[[C]]`` after the same prompt: always parseable, usable with small models).

Example::

    >>> items = world_pair_items(100)                                               # doctest: +SKIP
    >>> report = measure_judges({"sft": lm_verdicts(load_lm("runs/sft"))}, items)   # doctest: +SKIP
    >>> report["judges"]["sft"]["agreement"]                                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.evaluate.ai_risk import wilson_interval
from alignlab.evaluate.interface import LM
from alignlab.evaluate.judge import PAIR, SYSTEM, majority_verdict, parse_pair, swap_rule

# A verdict function judges pairs shown in one order: "first", "second", "tie" or None (unparsed).
Verdicts = Callable[[Sequence["PairItem"], bool], list[str | None]]


@dataclass
class PairItem:
    """A prompt, two replies and their true rewards."""

    prompt: str
    a: str
    b: str
    reward_a: float
    reward_b: float

    def shown(self, swapped: bool) -> tuple[str, str]:
        return (self.b, self.a) if swapped else (self.a, self.b)


def world_pair_items(n: int | None = None, *, seed: int = 0, path: str | Path | None = None) -> list[PairItem]:
    """Pairs of the world's held-out preference data whose true rewards differ, the better reply placed first
    or second at random (so position and quality are independent)."""
    from alignlab.world.judge import true_reward

    if path is None:
        from alignlab.world.build import build_world

        path = build_world(verbose=False).datasets["pairs_eval"]
    rng = random.Random(seed)
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        prompt = row["prompt"][-1]["content"]
        good, bad = row["chosen"][-1]["content"], row["rejected"][-1]["content"]
        r_good, r_bad = true_reward(prompt, good), true_reward(prompt, bad)
        if r_good == r_bad:
            continue
        if rng.random() < 0.5:
            items.append(PairItem(prompt, good, bad, r_good, r_bad))
        else:
            items.append(PairItem(prompt, bad, good, r_bad, r_good))
    return items[:n]


def _pair_prompts(items: Sequence[PairItem], swapped: bool) -> list[list[dict[str, str]]]:
    chats = []
    for item in items:
        first, second = item.shown(swapped)
        text = PAIR.format(reference="", conversation_a=f"### User:\n{item.prompt}\n\n### Assistant:\n{first}",
                           conversation_b=f"### User:\n{item.prompt}\n\n### Assistant:\n{second}")
        chats.append([{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}])
    return chats


_POSITION = {"A": "first", "B": "second", "C": "tie"}


def lm_verdicts(judge: LM, *, mode: str = "generate", max_tokens: int = 64) -> Verdicts:
    """A model as judge: it writes a verdict (``generate``) or its likeliest verdict token is read
    (``likelihood``; needs log-likelihoods and, for chat models, a tokenizer with a chat template)."""

    def generated(items: Sequence[PairItem], swapped: bool) -> list[str | None]:
        outs = judge.generate(_pair_prompts(items, swapped), max_tokens=max_tokens, temperature=0.0)
        return [_POSITION.get(parse_pair(o)) for o in outs]

    def likeliest(items: Sequence[PairItem], swapped: bool) -> list[str | None]:
        tokenizer = getattr(judge, "tokenizer", None)
        contexts = [tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
                    if getattr(tokenizer, "chat_template", None) else chat[-1]["content"] + "\n"
                    for chat in _pair_prompts(items, swapped)]
        lls = [ll for ll, _ in judge.loglikelihood([(c, f"[[{v}]]") for c in contexts for v in "ABC"])]
        return [_POSITION["ABC"[max(range(3), key=lambda k: lls[3 * i + k])]] for i in range(len(items))]

    if mode not in ("generate", "likelihood"):
        raise ValueError(f"judge mode must be 'generate' or 'likelihood', got {mode!r}")
    return generated if mode == "generate" else likeliest


def annotator_verdicts(annotator: Any, *, seed: int = 0) -> Verdicts:
    """A simulated annotator of the world (:class:`alignlab.world.annotators.Annotator`) as a judge: a judge
    with known noise and length bias, to check what the measures recover."""
    rng = random.Random(seed)

    def verdicts(items: Sequence[PairItem], swapped: bool) -> list[str | None]:
        return [("first", "second")[annotator.prefer(item.prompt, *item.shown(swapped), rng)] for item in items]

    return verdicts


def _share(hits: Sequence[float]) -> dict[str, Any]:
    n = len(hits)
    return {"rate": sum(hits) / n if n else None, "interval_95": list(wilson_interval(sum(hits), n)), "n": n}


def _as_ab(verdict: str | None, swapped: bool) -> str | None:
    """A one-order verdict in terms of replies a / b."""
    if verdict is None or verdict == "tie":
        return verdict
    first = verdict == "first"
    return "a" if first != swapped else "b"


def _score(combined: Sequence[str | None], items: Sequence[PairItem]) -> dict[str, Any]:
    """Agreement with the truth and the length pull of combined verdicts."""
    agree, longer_picked, longer_better = [], [], []
    for verdict, item in zip(combined, items):
        if verdict is None:
            continue
        truth = "a" if item.reward_a > item.reward_b else "b"
        agree.append(0.5 if verdict == "tie" else float(verdict == truth))
        if verdict != "tie" and len(item.a) != len(item.b):
            longer = "a" if len(item.a) > len(item.b) else "b"
            longer_picked.append(float(verdict == longer))
            longer_better.append(float(truth == longer))
    return {"agreement": _share(agree), "picks_longer": _share(longer_picked),
            "longer_truly_better": _share(longer_better)}


def measure_judges(judges: dict[str, Verdicts], items: Sequence[PairItem], *,
                   committees: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Every judge's agreement, position and length bias and parse failures on ``items``; and each committee's
    (``{name: [member judges]}``; by default one of all judges when there are several)."""
    combined_by_judge, report = {}, {}
    for name, judge in judges.items():
        first_order, second_order = judge(items, False), judge(items, True)
        ab = [_as_ab(v, False) for v in first_order]
        ba = [_as_ab(v, True) for v in second_order]
        combined = [swap_rule(x, y) for x, y in zip(ab, ba)]
        combined_by_judge[name] = combined
        shown_first = [float(v == "first") for v in first_order + second_order if v in ("first", "second")]
        both = [(x, y) for x, y in zip(ab, ba) if x is not None and y is not None]
        report[name] = {
            **_score(combined, items),
            "prefers_first_position": _share(shown_first),
            "flips_with_order": _share([float(x != y) for x, y in both]),
            "parse_failures": sum(v is None for v in first_order + second_order),
            "n_pairs": len(items),
        }
    if committees is None:
        committees = {"committee (all)": list(judges)} if len(judges) > 1 else {}
    committee_report = {}
    for name, members in committees.items():
        majority = [majority_verdict(votes) for votes in zip(*(combined_by_judge[m] for m in members))]
        committee_report[name] = {**_score(majority, items), "members": list(members),
                                  "unjudged": sum(v is None for v in majority)}
    return {"judges": report, "committees": committee_report, "n_pairs": len(items)}


# ---- the `alignlab judge-calibration` command ------------------------------------------------------------------
@dataclass
class JudgeCalibrationConfig:
    """Measure judges on the toy world's held-out preference pairs against its true reward."""

    judges: dict[str, str]
    """judges to measure, {NAME: MODEL_PATH_OR_URL}"""
    output: str
    """directory for results.json"""
    mode: str = "likelihood"
    """how a model judges: generate (writes [[A]]/[[B]]/[[C]]) or likelihood (its likeliest verdict token)"""
    limit: int | None = 200
    """use only the first N pairs (null: all)"""
    annotators: bool = True
    """also measure the world's simulated annotators (noise-free, noisy, length-biased) as reference judges"""
    max_tokens: int = 64
    """verdict length cap in generate mode"""
    seed: int = 0
    """seed of the pair order and of the annotators' noise"""

    def __post_init__(self) -> None:
        if not self.judges and not self.annotators:
            raise ValueError("judges: name at least one judge model (or keep annotators on)")
        if self.mode not in ("generate", "likelihood"):
            raise ValueError(f"mode must be 'generate' or 'likelihood', got {self.mode!r}")


def run_judge_calibration(config: JudgeCalibrationConfig) -> dict[str, Any]:
    """Measure every judge of ``config`` and write ``results.json`` (with provenance)."""
    from alignlab.core.provenance import write_result
    from alignlab.evaluate.lm import load_lm
    from alignlab.world.annotators import Annotator

    items = world_pair_items(config.limit, seed=config.seed)
    judges: dict[str, Verdicts] = {
        name: lm_verdicts(load_lm(spec), mode=config.mode, max_tokens=config.max_tokens)
        for name, spec in config.judges.items()
    }
    if config.annotators:
        judges["annotator (noise-free)"] = annotator_verdicts(Annotator(temperature=0.0), seed=config.seed)
        judges["annotator (noisy, T=1)"] = annotator_verdicts(Annotator(temperature=1.0), seed=config.seed)
        judges["annotator (length-biased)"] = annotator_verdicts(Annotator(temperature=0.3, length_bias=0.5),
                                                                 seed=config.seed)
    committees = {"committee (all)": list(judges)} if len(judges) > 1 else {}
    if len(config.judges) > 1:
        committees["committee (models)"] = list(config.judges)
    report = measure_judges(judges, items, committees=committees)
    write_result(Path(config.output) / "results.json", report, seed=config.seed, config=config)
    return report
