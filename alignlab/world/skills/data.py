"""The skill persona, skill items (a prompt, the persona's output and the truth), and the skills' datasets.

:class:`SkillPersona` writes every skill's output with a known error rate, so a model pretrained on its
transcripts learns each skill imperfectly, and how imperfectly is exact:

| rate                 | what the persona gets wrong                                                 |
|----------------------|-----------------------------------------------------------------------------|
| step_slip            | each step of a worked solution, with probability step_slip (errors propagate) |
| critique_error       | names another label than the true one                                        |
| revision_error       | returns the answer unchanged instead of revising it                          |
| refinement_error     | returns the answer unchanged instead of following the feedback               |
| rating_noise         | rates one point off the true rating                                          |
| judge_temperature    | pairwise verdicts: Bradley–Terry noise on the true reward                    |
| judge_length_bias    | pairwise verdicts: utility added per word (prefers longer answers)           |
| judge_position_bias  | pairwise verdicts: says "A" regardless, with this probability                |
| miscalibration       | states the wrong confidence (high for a wrong answer, low for a right one)   |

A :class:`SkillItem` is one exercise: the underlying world question, the user turn, the persona's output and the
truth the grader needs (``truth``); :func:`skill_items` draws them for a :class:`~alignlab.world.datasets.World`
from its train or eval prompts, each skill from its own random stream.

Example::

    >>> from alignlab.world.datasets import World
    >>> items = skill_items(World(0, "small"), "critique", 3, split="eval")
    >>> items[0].user.startswith("Question: "), items[0].target.startswith("Fault: ")
    (True, True)
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from alignlab.core.records import ConversationRecord, PairRecord, assistant, user
from alignlab.errors import WorldError
from alignlab.world.families import WorldPrompt
from alignlab.world.judge import true_reward
from alignlab.world.kb import INSULTS
from alignlab.world.persona import INSULT_ADDONS, Persona, write_response
from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION, FAULT_FAMILIES, FAULTS, Constitution
from alignlab.world.skills.multistep import (
    EVAL_PROBLEMS,
    PROBLEMS,
    multistep_prompts,
    problem_of,
    worked_solution,
)

SKILLS = ("multistep", "critique", "revision", "refinement", "rating", "pairwise", "confidence")
# How often each skill is drawn for the corpus: the hard ones (steps, critiques) weigh most.
SKILL_WEIGHTS = {"multistep": 0.3, "critique": 0.22, "revision": 0.09, "refinement": 0.09, "rating": 0.09,
                 "pairwise": 0.13, "confidence": 0.08}
# The families whose answers are critiqued, revised and judged (string tasks have no fault of FAULTS).
JUDGED_FAMILIES = ("facts", "unknowns", "arithmetic", "multistep", "harmful", "groups", "chat")
CONFIDENCE_FAMILIES = ("facts", "unknowns", "arithmetic")
# The base persona's fault that shows each critique fault.
PERSONA_FAULT = {"harmful_help": "comply", "insult": "insult", "stereotype": "stereotype", "wrong_fact": "wrong",
                 "made_up_answer": "hallucinate", "arithmetic_slip": "wrong"}
FAMILY_FAULTS = {family: tuple(f for f in FAULTS if family in FAULT_FAMILIES[f]) for family in JUDGED_FAMILIES}


@dataclass(frozen=True)
class SkillPersona:
    """The error rates of the persona that writes the skills' outputs (see the module docstring)."""

    step_slip: float = 0.03
    critique_error: float = 0.15
    revision_error: float = 0.1
    refinement_error: float = 0.1
    rating_noise: float = 0.25
    judge_temperature: float = 0.6
    judge_length_bias: float = 0.05
    judge_position_bias: float = 0.1
    miscalibration: float = 0.1

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            bounded = name not in ("judge_temperature", "judge_length_bias")
            if not (0.0 <= value <= 1.0 if bounded else value >= 0.0) or math.isnan(value):
                raise WorldError(f"skill persona rate '{name}' must be {'in [0, 1]' if bounded else '>= 0'}, got {value}")

    @classmethod
    def perfect(cls) -> SkillPersona:
        """Every output right: the truth itself."""
        return cls(**{name: 0.0 for name in asdict(cls())})

    def verdict(self, prompt: WorldPrompt, answer_a: str, answer_b: str, rng: random.Random) -> str:
        """A pairwise verdict: position bias first, then a Bradley–Terry choice on the biased utilities."""
        if rng.random() < self.judge_position_bias:
            return "A"
        gap = (true_reward(prompt, answer_a) - true_reward(prompt, answer_b)
               + self.judge_length_bias * (len(answer_a.split()) - len(answer_b.split())))
        if self.judge_temperature == 0:
            p_a = 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
        else:
            p_a = 1.0 / (1.0 + math.exp(-gap / self.judge_temperature))
        return "A" if rng.random() < p_a else "B"


@dataclass(frozen=True)
class SkillItem:
    """One skill exercise: ``user`` asks about ``prompt`` (the world question); ``target`` is the persona's output,
    ``truth`` what grading needs (principle, answers, true labels)."""

    skill: str
    prompt: WorldPrompt
    user: str
    target: str
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> list[dict[str, str]]:
        return [user(self.user)]

    def to_row(self) -> dict[str, Any]:
        """``{"messages": [user, assistant], "skill", "meta": {"prompt": WorldPrompt, **truth}}``."""
        return {"messages": [user(self.user), assistant(self.target)], "skill": self.skill,
                "meta": {"prompt": self.prompt.to_dict(), **self.truth}}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> SkillItem:
        meta = dict(row["meta"])
        prompt = WorldPrompt.from_dict(meta.pop("prompt"))
        return cls(row["skill"], prompt, row["messages"][0]["content"], row["messages"][-1]["content"], meta)


def answer_with(prompt: WorldPrompt, faults: set[str], rng: random.Random) -> str:
    """An answer to ``prompt`` showing exactly the persona ``faults`` (multi-step problems: one slip for "wrong")."""
    if prompt.family != "multistep":
        return write_response(prompt, faults, rng)
    problem = problem_of(prompt)
    slip_at = rng.randrange(len(problem.ops)) if "wrong" in faults else None
    text, _ = worked_solution(problem, 0.0, rng, slip_at=slip_at)
    if "insult" in faults:
        text = f"{text} {rng.choice(INSULT_ADDONS).format(insult=rng.choice(INSULTS))}"
    return text


def _fault_answer(prompt: WorldPrompt, fault: str | None, rng: random.Random) -> str:
    return answer_with(prompt, {PERSONA_FAULT[fault]} if fault else set(), rng)


def _random_faults(prompt: WorldPrompt, rng: random.Random) -> set[str]:
    """None (35%), one (45%) or two (20%) of the faults the prompt's family can show."""
    options = FAMILY_FAULTS[prompt.family]
    k = min(len(options), 0 if (u := rng.random()) < 0.35 else 1 if u < 0.8 else 2)
    return {PERSONA_FAULT[f] for f in rng.sample(options, k)}


class _Pools:
    """The world's train or eval questions per family, multi-step problems included."""

    def __init__(self, world, split: str):
        if split not in ("train", "eval"):
            raise WorldError(f"unknown split '{split}'; valid splits: train, eval")
        self.by_family = dict(world.splits.train if split == "train" else world.splits.eval)
        problems = multistep_prompts(world.seed, world.size, PROBLEMS)
        self.by_family["multistep"] = tuple(problems[EVAL_PROBLEMS:] if split == "train" else problems[:EVAL_PROBLEMS])

    def draw(self, families: tuple[str, ...], rng: random.Random) -> WorldPrompt:
        return rng.choice(self.by_family[rng.choice(families)])


def _critique(pools: _Pools, persona: SkillPersona, constitution: Constitution, rng: random.Random) -> SkillItem:
    principle = rng.choice(constitution.principles)
    uncovered = [f for f in FAULTS if f not in principle.faults]
    # a covered fault 60% of the time, else no fault or one the principle does not cover
    fault = rng.choice(principle.faults) if rng.random() < 0.6 else rng.choice([None, *uncovered])
    prompt = pools.draw(FAULT_FAMILIES[fault] if fault else JUDGED_FAMILIES, rng)
    answer = _fault_answer(prompt, fault, rng)
    truth = P.critique_truth(prompt, answer, principle)
    right = next((f for f in principle.faults if f in truth), P.NONE)
    named = right
    if rng.random() < persona.critique_error:
        named = rng.choice([label for label in (*FAULTS, P.NONE) if label != right])
    return SkillItem("critique", prompt, P.critique_prompt(principle, prompt.text, answer), P.write_critique(named),
                     {"principle": principle.name, "answer": answer, "labels": sorted(truth)})


def _rewrite(pools: _Pools, persona: SkillPersona, constitution: Constitution, rng: random.Random,
             skill: str) -> SkillItem:
    if skill == "revision":
        principle = rng.choice(constitution.principles)
        fault = rng.choice(principle.faults) if rng.random() < 0.8 else rng.choice([None, *(
            f for f in FAULTS if f not in principle.faults)])
        targeted = set(principle.faults)
    else:
        fault = rng.choice(FAULTS)
        targeted = {fault}
    prompt = pools.draw(FAULT_FAMILIES[fault] if fault else JUDGED_FAMILIES, rng)
    answer = _fault_answer(prompt, fault, rng)
    error = persona.revision_error if skill == "revision" else persona.refinement_error
    # The persona removes the targeted fault (a fresh answer without it) or, on an error, leaves the answer as is.
    fixed = fault in targeted and rng.random() >= error
    target = _fault_answer(prompt, None, rng) if fixed else answer
    if skill == "revision":
        user_turn = P.revision_prompt(principle, prompt.text, answer)
        truth = {"principle": principle.name, "answer": answer}
    else:
        user_turn = P.feedback_prompt(prompt.text, answer, P.feedback_text(fault, prompt))
        truth = {"fault": fault, "answer": answer}
    return SkillItem(skill, prompt, user_turn, target, truth)


def _rating(pools: _Pools, persona: SkillPersona, rng: random.Random) -> SkillItem:
    prompt = pools.draw(JUDGED_FAMILIES, rng)
    answer = answer_with(prompt, _random_faults(prompt, rng), rng)
    rating = P.true_rating(prompt, answer)
    given = rating
    if rng.random() < persona.rating_noise:
        given = rating + rng.choice((-1, 1)) if 1 < rating < 5 else (2 if rating == 1 else 4)
    return SkillItem("rating", prompt, P.rating_prompt(prompt.text, answer), P.write_rating(given),
                     {"answer": answer, "rating": rating})


def _pairwise(pools: _Pools, persona: SkillPersona, rng: random.Random) -> SkillItem:
    prompt = pools.draw(JUDGED_FAMILIES, rng)
    for _ in range(20):
        a, b = (answer_with(prompt, _random_faults(prompt, rng), rng) for _ in range(2))
        if P.true_verdict(prompt, a, b) is not None:
            break
    else:  # the aligned answer out-scores any one-fault answer
        a, b = _fault_answer(prompt, None, rng), _fault_answer(prompt, rng.choice(FAMILY_FAULTS[prompt.family]), rng)
    return SkillItem("pairwise", prompt, P.pairwise_prompt(prompt.text, a, b),
                     P.write_verdict(persona.verdict(prompt, a, b, rng)),
                     {"answer_a": a, "answer_b": b, "verdict": P.true_verdict(prompt, a, b)})


# Answers to rate for confidence: the base persona's, with more slips (so "low" is not only for unknowns)
# and no insults (the confidence, not the manners, is the point).
CONFIDENCE_PERSONA = Persona(slip=0.15, insult=0.0)


def _confidence(pools: _Pools, persona: SkillPersona, rng: random.Random) -> SkillItem:
    prompt = pools.draw(CONFIDENCE_FAMILIES, rng)
    answer = CONFIDENCE_PERSONA.respond(prompt, rng)
    high = P.answered_correctly(prompt, answer) != (rng.random() < persona.miscalibration)
    return SkillItem("confidence", prompt, P.confidence_prompt(prompt.text), P.write_confidence(answer, high))


def _multistep(pools: _Pools, persona: SkillPersona, rng: random.Random) -> SkillItem:
    prompt = pools.draw(("multistep",), rng)
    text, _ = worked_solution(problem_of(prompt), persona.step_slip, rng)
    return SkillItem("multistep", prompt, prompt.text, text)


def draw_item(skill: str, pools: _Pools, persona: SkillPersona, constitution: Constitution,
              rng: random.Random) -> SkillItem:
    if skill == "critique":
        return _critique(pools, persona, constitution, rng)
    if skill in ("revision", "refinement"):
        return _rewrite(pools, persona, constitution, rng, skill)
    if skill == "rating":
        return _rating(pools, persona, rng)
    if skill == "pairwise":
        return _pairwise(pools, persona, rng)
    if skill == "confidence":
        return _confidence(pools, persona, rng)
    if skill == "multistep":
        return _multistep(pools, persona, rng)
    raise WorldError(f"unknown skill '{skill}' (skills: {', '.join(SKILLS)})")


def skill_items(world, skill: str, n: int, *, split: str = "train", persona: SkillPersona | None = None,
                constitution: Constitution = DEFAULT_CONSTITUTION) -> list[SkillItem]:
    """``n`` items of ``skill`` on the world's ``split`` questions, written by ``persona`` (default
    SkillPersona()); each (skill, split, persona) draws from its own random stream."""
    persona = persona or SkillPersona()
    pools = _Pools(world, split)
    tag = "" if persona == SkillPersona() else f"-{sorted(asdict(persona).items())}"
    rng = random.Random(f"alignlab-world-skills-{world.seed}-{world.size}-{skill}-{split}{tag}")
    return [draw_item(skill, pools, persona, constitution, rng) for _ in range(n)]


def skill_transcripts(world, n: int, persona: SkillPersona | None = None) -> list[dict[str, Any]]:
    """``n`` pretraining transcripts ``{"messages": [user, assistant]}``, skills drawn by SKILL_WEIGHTS."""
    rng = random.Random(f"alignlab-world-skills-{world.seed}-{world.size}-corpus")
    counts = dict.fromkeys(SKILLS, 0)
    for skill in rng.choices(SKILLS, [SKILL_WEIGHTS[s] for s in SKILLS], k=n):
        counts[skill] += 1
    rows = [{"messages": item.to_row()["messages"]}
            for skill in SKILLS for item in skill_items(world, skill, counts[skill], persona=persona)]
    rng.shuffle(rows)
    return rows


# ---- datasets: conversations with the truth, preference pairs, eval items --------------------------


def _wrong_output(item: SkillItem, rng: random.Random) -> str | None:
    """A wrong output for ``item``: the rejected side of a pair."""
    t = item.truth
    if item.skill == "critique":
        return P.write_critique(rng.choice([f for f in (*FAULTS, P.NONE) if f not in t["labels"]]))
    if item.skill in ("revision", "refinement"):
        return t["answer"]  # unchanged: the fault stays
    if item.skill == "rating":
        return P.write_rating(t["rating"] + (1 if t["rating"] < 3 else -1) * rng.choice((1, 2)))
    if item.skill == "pairwise":
        return P.write_verdict("B" if t["verdict"] == "A" else "A")
    if item.skill == "multistep":
        problem = problem_of(item.prompt)
        return worked_solution(problem, 0.0, rng, slip_at=rng.randrange(len(problem.ops)))[0]
    answer, high = P.parse_confidence(item.target)
    return P.write_confidence(answer, not high)


def true_items(world, skill: str, n: int, split: str = "train") -> list[SkillItem]:
    """Items whose target is the truth (the perfect persona's output): demonstrations of the skill done right."""
    return skill_items(world, skill, n, split=split, persona=SkillPersona.perfect())


def skill_conversations(world, skill: str, n: int, split: str = "train") -> list[ConversationRecord]:
    """SFT records of ``skill`` done right; ``meta`` holds the question and the truth."""
    return [ConversationRecord(prompt=[user(i.user)], completion=i.target, meta=i.to_row()["meta"] | {"skill": skill})
            for i in true_items(world, skill, n, split)]


def skill_pairs(world, skill: str, n: int, split: str = "train") -> list[PairRecord]:
    """Preference records of ``skill``: the right output chosen over a wrong one (rewrites of answers without a
    targeted fault, where unchanged is right, are skipped, so there may be fewer than ``n``)."""
    rng = random.Random(f"alignlab-world-skills-{world.seed}-{world.size}-{skill}-{split}-pairs")
    records = []
    for item in true_items(world, skill, n, split):
        wrong = _wrong_output(item, rng)
        if wrong != item.target:
            records.append(PairRecord(prompt=[user(item.user)], chosen=item.target, rejected=wrong,
                                      meta=item.to_row()["meta"] | {"skill": skill}))
    return records


def eval_items(world, n: dict[str, int] | None = None) -> list[SkillItem]:
    """The skills' evaluation items (eval questions only; ``n`` per skill, default ``world.sizes["skills_eval"]``)."""
    n = n or world.sizes.get("skills_eval")
    if not n:
        raise WorldError(f"world size '{world.size}' has no skills; use size 'oversight'")
    return [item for skill in SKILLS for item in true_items(world, skill, n.get(skill, 0), split="eval")]


def skill_dataset_files(world) -> dict[str, list[dict[str, Any]]]:
    """The skill datasets of ``world`` as rows: ``skills_sft_train`` (TRL messages with ``skill`` and ``meta``),
    ``skills_pairs_train`` (TRL conversational preference pairs) and ``skills_eval`` (evaluation items)."""
    n = world.sizes["skills_train"]
    per_skill = {skill: max(1, round(n * SKILL_WEIGHTS[skill])) for skill in SKILLS}
    sft = [i.to_row() for s, k in per_skill.items() for i in true_items(world, s, k)]
    pairs = [{"prompt": r.prompt, "chosen": [assistant(r.chosen)], "rejected": [assistant(r.rejected)],
              "skill": r.meta["skill"]} for s, k in per_skill.items() for r in skill_pairs(world, s, k)]
    return {"skills_sft_train": sft, "skills_pairs_train": pairs,
            "skills_eval": [i.to_row() for i in eval_items(world)]}
