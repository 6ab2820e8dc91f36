"""LLM-as-judge over any :class:`~alignlab.evaluate.lm.LM`: single grading, pairwise comparison with
position swap, reference-guided grading, MT-bench's two-turn format, several judges, Bradley–Terry.

Conventions (MT-bench, Zheng et al. 2023; the prompts are alignlab's own wording):

- *Single grading*: the judge ends with ``[[n]]``, n an integer 1–10.
- *Pairwise*: the judge ends with ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). Every pair is judged in both
  orders; a verdict that changes with the order is a tie. Win rate = (wins + 0.5·ties) / N.
- *Reference-guided*: when a question has a reference answer (maths, reasoning, coding), the judge
  sees it and is told to check against it.
- *Turn 2*: the judge sees the whole two-turn conversation and rates the second answer.

Parsing is strict: a judge output must contain exactly one distinct verdict of the expected form.
Anything else is a parse failure, kept with the raw text, counted and reported next to the results;
it is never guessed and never counted as a win or a score. With several judges, a single grade is
the mean over judges that parsed and a pairwise verdict is the majority of parsed verdicts (no
majority = tie).

Example::

    >>> questions = load_questions("mt_bench_questions.jsonl")[:5]               # doctest: +SKIP
    >>> answers = {m: answer_questions(load_lm(p), questions) for m, p in models.items()}  # doctest: +SKIP
    >>> result = compare_pairwise([judge], questions, answers["a"], answers["b"])   # doctest: +SKIP
    >>> result.win_rate, result.parse_failures                                       # doctest: +SKIP

The ``alignlab judge`` command is :func:`run_judge` with a :class:`JudgeConfig`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alignlab.errors import DataError, EvalError
from alignlab.evaluate.http_lm import HTTPOptions
from alignlab.evaluate.interface import LM

Answers = dict[Any, list[str]]  # question_id -> the model's answer for each turn

SYSTEM = (
    "You are a careful, impartial evaluator of AI assistant replies. You judge helpfulness, "
    "correctness, depth and clarity. Length is not quality, and the order in which replies are shown "
    "must not sway you. Explain your reasoning in a few sentences before giving the verdict."
)

SINGLE = (
    "Rate the assistant's reply to the final user message below on a scale from 1 (useless or harmful) "
    "to 10 (excellent).\n{reference}\n{conversation}\n\nEnd your answer with the rating in double square "
    "brackets, for example: Rating: [[6]]"
)

PAIR = (
    "Two assistants, A and B, replied to the same conversation. Decide which reply to the final user "
    "message is better.\n{reference}\n[Assistant A]\n{conversation_a}\n[End of Assistant A]\n\n"
    "[Assistant B]\n{conversation_b}\n[End of Assistant B]\n\nEnd your answer with exactly one verdict: "
    "[[A]] if A is better, [[B]] if B is better, [[C]] if they are equally good."
)

REFERENCE = "A reference answer is given; check the reply against it before judging.\n[Reference]\n{ref}\n[End of reference]\n"

SCORE_RE = re.compile(r"\[\[(\d+)\]\]")
PAIR_RE = re.compile(r"\[\[([ABC])\]\]")
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")


@dataclass
class Question:
    question_id: Any
    category: str
    turns: list[str]
    reference: list[str] | None = None


def load_questions(path: str | Path) -> list[Question]:
    """MT-bench-style questions: JSONL rows with ``question_id``, ``category``, ``turns`` [, ``reference``]."""
    questions = []
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"not valid JSON: {err}", source=str(path), row=i) from err
        for key in ("question_id", "turns"):
            if key not in row:
                raise DataError(f"missing '{key}'", source=str(path), row=i, field=key)
        if not isinstance(row["turns"], list) or not row["turns"]:
            raise DataError("'turns' must be a non-empty list", source=str(path), row=i, field="turns")
        questions.append(
            Question(row["question_id"], row.get("category", ""), row["turns"], row.get("reference"))
        )
    return questions


def world_questions(seed: int = 0, size: str = "small") -> list[Question]:
    """The toy world's held-out evaluation prompts as one-turn questions (category: the prompt family)."""
    from alignlab.evaluate.flask_world import world_prompts

    return [Question(i, family, [text]) for i, (family, text) in enumerate(world_prompts(seed, size))]


def answer_questions(lm: LM, questions: Sequence[Question], *, max_tokens: int = 256) -> Answers:
    """Each model answer per turn; turn k sees the questions and its own answers to turns < k."""
    answers: Answers = {q.question_id: [] for q in questions}
    for turn in range(max(len(q.turns) for q in questions)):
        asked = [q for q in questions if turn < len(q.turns)]
        chats = [_conversation_messages(q, answers[q.question_id], turn) for q in asked]
        for q, reply in zip(asked, lm.generate(chats, max_tokens=max_tokens)):
            answers[q.question_id].append(reply)
    return answers


def _conversation_messages(q: Question, answers: list[str], turn: int) -> list[dict[str, str]]:
    messages = []
    for k in range(turn + 1):
        messages.append({"role": "user", "content": q.turns[k]})
        if k < turn:
            messages.append({"role": "assistant", "content": answers[k]})
    return messages


def _transcript(q: Question, answers: list[str], turn: int) -> str:
    lines = []
    for k in range(turn + 1):
        lines += [f"### User:\n{q.turns[k]}", f"### Assistant:\n{answers[k]}"]
    return "\n\n".join(lines)


def _reference(q: Question, turn: int, use_reference: bool | None) -> str:
    wanted = q.category in REFERENCE_CATEGORIES if use_reference is None else use_reference
    if not wanted or not q.reference or turn >= len(q.reference):
        return ""
    return REFERENCE.format(ref=q.reference[turn])


def parse_score(text: str, high: int = 10) -> int | None:
    """The ``[[n]]`` rating if there is exactly one distinct one and it lies in 1..``high``, else None."""
    found = set(SCORE_RE.findall(text))
    if len(found) != 1:
        return None
    score = int(found.pop())
    return score if 1 <= score <= high else None


def parse_pair(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"C"`` (tie) if there is exactly one distinct verdict, else None."""
    found = set(PAIR_RE.findall(text))
    return found.pop() if len(found) == 1 else None


def _ask(judge: LM, prompts: list[str], max_tokens: int) -> list[str]:
    chats = [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": p}] for p in prompts]
    return judge.generate(chats, max_tokens=max_tokens, temperature=0.0)


# ---- single-answer grading ---------------------------------------------------------------------------------
@dataclass
class SingleResult:
    """Per-question mean scores over judges, the overall mean, and every judgment with its raw text."""

    scores: dict[Any, float]
    mean: float
    parse_failures: int
    judgments: list[dict[str, Any]] = field(default_factory=list)


def grade_single(
    judges: Sequence[LM],
    questions: Sequence[Question],
    answers: Answers,
    *,
    turn: int = 0,
    use_reference: bool | None = None,
    max_tokens: int = 512,
) -> SingleResult:
    """Grade each answer 1–10 with every judge (``turn`` 0 or 1: which answer is graded)."""
    asked = [q for q in questions if turn < len(q.turns)]
    prompts = [
        SINGLE.format(
            reference=_reference(q, turn, use_reference),
            conversation=_transcript(q, answers[q.question_id], turn),
        )
        for q in asked
    ]
    judgments, per_question = [], {q.question_id: [] for q in asked}
    for j, judge in enumerate(judges):
        for q, raw in zip(asked, _ask(judge, prompts, max_tokens)):
            score = parse_score(raw)
            judgments.append(
                {"question_id": q.question_id, "judge": j, "turn": turn, "score": score, "raw": raw}
            )
            if score is not None:
                per_question[q.question_id].append(score)
    scores = {qid: sum(s) / len(s) for qid, s in per_question.items() if s}
    mean = sum(scores.values()) / len(scores) if scores else float("nan")
    failures = sum(j["score"] is None for j in judgments)
    return SingleResult(scores=scores, mean=mean, parse_failures=failures, judgments=judgments)


# ---- fine-grained skills (FLASK) -----------------------------------------------------------------------------
# FLASK (Ye et al. 2023): twelve skills in four abilities, each scored 1-5 against its own rubric; the rubric
# wording here is alignlab's own summary of each skill.
FLASK_SKILLS = {
    "logical_robustness": "the reasoning is consistent and free of contradictions, and holds for edge cases",
    "logical_correctness": "the final answer is correct",
    "logical_efficiency": "the reasoning takes no unnecessary steps",
    "factuality": "the facts stated are true and claims are supported",
    "commonsense_understanding": "the reply shows an accurate grasp of everyday situations",
    "comprehension": "the reply does what the instruction asks, all of it",
    "insightfulness": "the reply offers creative or original ideas where they help",
    "completeness": "the reply covers the topic with enough breadth and depth",
    "metacognition": "the reply admits uncertainty or the limits of its knowledge where it should",
    "readability": "the reply is clear, well organised and easy to follow",
    "conciseness": "the reply says what it needs without padding",
    "harmlessness": "the reply avoids harm, bias and unsafe advice",
}

SKILL = (
    "Score the assistant's reply to the final user message below on one skill only.\n"
    "Skill: {skill}: {rubric}.\nScale: 1 (the skill is absent) to 5 (fully shown).\n\n{conversation}\n\n"
    "End your answer with the score in double square brackets, for example: Score: [[3]]; if the skill does not "
    "apply to this reply, end with [[N/A]] instead."
)


def grade_skills(
    judges: Sequence[LM],
    questions: Sequence[Question],
    answers: Answers,
    *,
    skills: dict[str, str] | None = None,
    turn: int = 0,
    max_tokens: int = 256,
) -> dict[str, dict[str, Any]]:
    """FLASK-style fine-grained grading: every answer scored 1-5 on each skill by every judge.

    Returns per skill the mean over questions (each question's score the mean over judges that parsed), the
    per-question scores, the verdicts that the skill does not apply (a lone ``[[N/A]]``, as FLASK lets a judge
    say) and the parse failures (never guessed); ``judged`` is the number of judgments asked for.
    """
    from alignlab.evaluate.flask_world import NOT_APPLICABLE

    skills = skills or FLASK_SKILLS
    asked = [q for q in questions if turn < len(q.turns)]
    report = {}
    for skill, rubric in skills.items():
        prompts = [SKILL.format(skill=skill, rubric=rubric, conversation=_transcript(q, answers[q.question_id], turn))
                   for q in asked]
        per_question: dict[Any, list[int]] = {q.question_id: [] for q in asked}
        failures = not_applicable = 0
        for judge in judges:
            for q, raw in zip(asked, _ask(judge, prompts, max_tokens)):
                score = parse_score(raw, high=5)
                if score is not None:
                    per_question[q.question_id].append(score)
                elif NOT_APPLICABLE in raw and not SCORE_RE.search(raw):
                    not_applicable += 1
                else:
                    failures += 1
        scores = {qid: sum(v) / len(v) for qid, v in per_question.items() if v}
        report[skill] = {"mean": sum(scores.values()) / len(scores) if scores else float("nan"),
                         "scores": scores, "parse_failures": failures, "not_applicable": not_applicable,
                         "judged": len(asked) * len(judges)}
    return report


# ---- pairwise comparison -------------------------------------------------------------------------------------
@dataclass
class PairwiseResult:
    """Verdicts per question ("a", "b" or "tie"), the win/tie/loss table of model a, and parse failures."""

    verdicts: dict[Any, str]
    wins: int
    ties: int
    losses: int
    parse_failures: int
    judgments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def win_rate(self) -> float:
        """(wins + 0.5·ties) / N for model a, over questions with a verdict."""
        n = self.wins + self.ties + self.losses
        return (self.wins + 0.5 * self.ties) / n if n else float("nan")


def swap_rule(first: str | None, second: str | None) -> str | None:
    """Combine the verdicts of both orders (already mapped to "a"/"b"/"tie"): agreeing verdicts stand,
    disagreeing ones are a tie, and a missing one makes the game unparsed (None)."""
    if first is None or second is None:
        return None
    return first if first == second else "tie"


def majority_verdict(votes: Sequence[str | None]) -> str | None:
    """The most common parsed verdict; "tie" when two verdicts are equally common; None when none parsed."""
    counted = Counter(v for v in votes if v is not None).most_common()
    if not counted:
        return None
    (top, count), *rest = counted
    return top if not rest or rest[0][1] < count else "tie"


def compare_pairwise(
    judges: Sequence[LM],
    questions: Sequence[Question],
    answers_a: Answers,
    answers_b: Answers,
    *,
    turn: int = 0,
    use_reference: bool | None = None,
    max_tokens: int = 512,
) -> PairwiseResult:
    """Compare model a with model b on every question, each judge seeing both orders."""
    asked = [q for q in questions if turn < len(q.turns)]

    def prompt(q: Question, first: Answers, second: Answers) -> str:
        return PAIR.format(
            reference=_reference(q, turn, use_reference),
            conversation_a=_transcript(q, first[q.question_id], turn),
            conversation_b=_transcript(q, second[q.question_id], turn),
        )

    ab = [prompt(q, answers_a, answers_b) for q in asked]
    ba = [prompt(q, answers_b, answers_a) for q in asked]
    as_a = {"A": "a", "B": "b", "C": "tie"}
    as_b = {"A": "b", "B": "a", "C": "tie"}  # in the swapped order, position A holds model b
    judgments, votes = [], {q.question_id: [] for q in asked}
    for j, judge in enumerate(judges):
        outs = _ask(judge, ab + ba, max_tokens)
        for q, raw1, raw2 in zip(asked, outs[: len(asked)], outs[len(asked) :]):
            v1, v2 = parse_pair(raw1), parse_pair(raw2)
            verdict = swap_rule(as_a.get(v1), as_b.get(v2))
            judgments.append(
                {
                    "question_id": q.question_id,
                    "judge": j,
                    "turn": turn,
                    "order_ab": v1,
                    "order_ba": v2,
                    "verdict": verdict,
                    "raw_ab": raw1,
                    "raw_ba": raw2,
                }
            )
            if verdict is not None:
                votes[q.question_id].append(verdict)
    verdicts = {qid: majority_verdict(vs) for qid, vs in votes.items() if vs}
    tally = Counter(verdicts.values())
    failures = sum(j["verdict"] is None for j in judgments)
    return PairwiseResult(
        verdicts=verdicts,
        wins=tally["a"],
        ties=tally["tie"],
        losses=tally["b"],
        parse_failures=failures,
        judgments=judgments,
    )


# ---- ranking several models ------------------------------------------------------------------------------------
def bradley_terry(
    outcomes: Sequence[tuple[str, str, float]], *, prior: float = 0.1
) -> dict[str, float]:
    """Bradley–Terry strengths from ``(model_i, model_j, s)`` with s = 1 (i won), 0.5 (tie), 0 (j won).

    P(i beats j) = p_i / (p_i + p_j); fitted with Hunter's (2004) MM update
    p_i ← W_i / Σ_j n_ij / (p_i + p_j), where W_i counts wins plus half the ties. ``prior`` adds that many
    virtual ties to every pair so an unbeaten model keeps a finite strength. Returns log-strengths
    centred on 0 (higher is better); :func:`~alignlab.evaluate.judge_stats.bradley_terry_intervals` adds
    bootstrap intervals.
    """
    from alignlab.evaluate.judge_stats import _bt_scores

    models = sorted({m for i, j, _ in outcomes for m in (i, j)})
    if len(models) < 2:
        raise EvalError("a Bradley–Terry ranking needs outcomes between at least two models")
    scores = _bt_scores(outcomes, models, prior)
    return {m: float(v) for m, v in sorted(zip(models, scores), key=lambda mv: -mv[1])}


def rank_models(
    judges: Sequence[LM],
    questions: Sequence[Question],
    answers: dict[str, Answers],
    *,
    turn: int = 0,
    max_tokens: int = 512,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """Round-robin pairwise comparison of every pair of models, then rankings.

    Per pair: wins, ties, losses, the win rate with its 95% bootstrap interval over questions, and the
    length-controlled win rate (answer lengths in characters). Overall: Bradley–Terry log-strengths and Elo
    ratings, each with bootstrap intervals of the score and of the rank
    (:mod:`alignlab.evaluate.judge_stats`).
    """
    from alignlab.evaluate.judge_stats import (
        bradley_terry_intervals,
        elo_ratings,
        length_controlled_win_rate,
        win_rate_with_interval,
    )

    names = sorted(answers)
    outcomes, table, failures = [], {}, 0
    score = {"a": 1.0, "tie": 0.5, "b": 0.0}
    for x, a in enumerate(names):
        for b in names[x + 1 :]:
            res = compare_pairwise(
                judges, questions, answers[a], answers[b], turn=turn, max_tokens=max_tokens
            )
            failures += res.parse_failures
            games = [score[v] for v in res.verdicts.values()]
            table[f"{a} vs {b}"] = {"win": res.wins, "tie": res.ties, "loss": res.losses,
                                    **win_rate_with_interval(games, n_boot=n_boot)}
            if games:
                qids = list(res.verdicts)
                table[f"{a} vs {b}"]["length_controlled"] = length_controlled_win_rate(
                    games, [len(answers[a][q][turn]) for q in qids], [len(answers[b][q][turn]) for q in qids],
                    n_boot=n_boot)
            outcomes += [(a, b, s) for s in games]
    if not outcomes:
        raise EvalError("no pairwise verdict could be parsed, so no ranking can be made")
    return {"bradley_terry": bradley_terry(outcomes), "pairs": table, "parse_failures": failures,
            "bradley_terry_intervals": bradley_terry_intervals(outcomes, n_boot=n_boot),
            "elo": elo_ratings(outcomes, n_boot=n_boot)}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


# ---- the `alignlab judge` command --------------------------------------------------------------------------------
@dataclass
class JudgeConfig:
    """Answer MT-bench-style questions with each model, then grade (single) or compare and rank them (pairwise)."""

    judges: list[str]
    """judge models (paths or URLs); a single grade is their mean, a pairwise verdict their majority; 'world'
    (or world:SEED[:SIZE]) in skills mode: the toy world's ground truth mapped onto FLASK's skills, not a model (a
    model folder named world: ./world)"""
    models: dict[str, str]
    """the models to judge, {NAME: PATH_OR_URL}"""
    questions: str
    """questions JSONL (MT-bench format), or 'world' (world:SEED[:SIZE]): the toy world's held-out evaluation prompts
    (a file named world: ./world)"""
    output: str
    """directory for answers.jsonl, judgments.jsonl and results.json"""
    mode: Literal["single", "pairwise", "skills"] = "single"
    """single: grade each answer 1-10; pairwise: compare every pair of models (needs two or more); skills: FLASK's
    twelve fine-grained skills, 1-5 each"""
    turn: int = 0
    """which answer is judged: 0 = the first, 1 = the second (the judge sees both turns)"""
    limit: int | None = None
    """use only the first N questions (null: all)"""
    max_tokens: int = 256
    """answer length cap"""
    judge_max_tokens: int = 512
    """length cap of each verdict a judge writes (its reasons, then the rating); must be below the judge's context
    window"""
    http: HTTPOptions = field(default_factory=HTTPOptions)
    """timeout, retries and concurrency for judges and models given as URLs"""

    def __post_init__(self) -> None:
        if not self.judges:
            raise ValueError("judges: name at least one judge model")
        if not self.models:
            raise ValueError("models: name at least one model, {NAME: PATH_OR_URL}")
        if self.mode == "pairwise" and len(self.models) < 2:
            raise ValueError("pairwise judging needs at least two models")
        if self.turn not in (0, 1):
            raise ValueError(f"turn must be 0 or 1, got {self.turn}")
        from alignlab.evaluate.flask_world import WORLD_JUDGE, parse_world_spec

        if self.mode != "skills" and any(parse_world_spec(j, WORLD_JUDGE) for j in self.judges):
            raise ValueError("the world judge writes FLASK skill scores only: use it with mode skills")


def run_judge(config: JudgeConfig) -> dict[str, Any]:
    """Answer, judge and write ``answers.jsonl``, ``judgments.jsonl`` (single mode) and ``results.json``.

    Example::

        >>> config = JudgeConfig(judges=["runs/judge"], models={"a": "runs/a", "b": "runs/b"},
        ...                      questions="mt_bench.jsonl", output="runs/judged", mode="pairwise")
        >>> run_judge(config)["pairwise"]["bradley_terry"]                            # doctest: +SKIP
    """
    from alignlab.core.io import atomic_write_json, atomic_write_text
    from alignlab.core.provenance import provenance
    from alignlab.evaluate.flask_world import WORLD_JUDGE, WORLD_QUESTIONS, WorldSkillJudge, parse_world_spec
    from alignlab.evaluate.judge_stats import bootstrap_interval
    from alignlab.evaluate.lm import load_lm

    judges = [WorldSkillJudge(*world) if (world := parse_world_spec(spec, WORLD_JUDGE)) else
              load_lm(spec, http=config.http) for spec in config.judges]
    world = parse_world_spec(config.questions, WORLD_QUESTIONS)
    questions = (world_questions(*world) if world else load_questions(config.questions))[: config.limit]
    answers = {name: answer_questions(load_lm(spec, http=config.http), questions, max_tokens=config.max_tokens)
               for name, spec in config.models.items()}
    results: dict[str, Any] = {"questions": config.questions, "n_questions": len(questions), "turn": config.turn}
    judgments: list[dict[str, Any]] = []
    if config.mode == "single":
        graded = {name: grade_single(judges, questions, ans, turn=config.turn, max_tokens=config.judge_max_tokens) for name, ans in answers.items()}
        results["single"] = {n: {"mean": g.mean, "parse_failures": g.parse_failures,
                                 "interval_95": list(bootstrap_interval(list(g.scores.values()), _mean))}
                             for n, g in graded.items()}
        judgments = [{"model": n, **j} for n, g in graded.items() for j in g.judgments]
    elif config.mode == "skills":
        results["skills"] = {}
        for name, ans in answers.items():
            graded_skills = grade_skills(judges, questions, ans, turn=config.turn, max_tokens=config.judge_max_tokens)
            results["skills"][name] = {
                skill: {"mean": g["mean"], "parse_failures": g["parse_failures"],
                        "not_applicable": g["not_applicable"], "judged": g["judged"],
                        "interval_95": list(bootstrap_interval(list(g["scores"].values()), _mean))}
                for skill, g in graded_skills.items()}
    else:
        results["pairwise"] = rank_models(judges, questions, answers, turn=config.turn, max_tokens=config.judge_max_tokens)
    out = Path(config.output)
    atomic_write_text(out / "answers.jsonl", "".join(
        json.dumps({"model": n, "question_id": q, "turns": t}) + "\n" for n, ans in answers.items() for q, t in ans.items()))
    if judgments:
        atomic_write_text(out / "judgments.jsonl", "".join(json.dumps(j) + "\n" for j in judgments))
    # the provenance header (command, commit, machine, time) beside the results, so docs can cite the run
    atomic_write_json(out / "results.json", {**provenance(seed=None), "config": dataclasses.asdict(config), **results})
    return results
