"""Multi-step arithmetic with worked solutions: problems of 2–6 operations, a grader per step and for the answer.

A problem applies its operations left to right to a running value that stays in 0..20, so every step is one of a
few hundred small-table facts a tiny model can learn (``step_table_documents`` states them all). It is written as
an ordinary expression, with parentheses only where precedence would otherwise change the order::

    (7 + 5 - 4) * 2        steps: 7 + 5 = 12. 12 - 4 = 8. 8 * 2 = 16. The answer is 16.

A worked solution states every step as ``a op b = c.`` and ends with ``The answer is N.``. A *slip* writes a
wrong ``c``; the next step starts from the wrong value, so the error propagates to the answer, as in the
process-supervision data of Lightman et al. (2023). :func:`grade_solution` grades each step (valid: the right
operation on the previous step's stated result, computed right) and the final answer; its parser is strict, and
a solution without the closing sentence is unparseable (its answer counts as wrong).

Example::

    >>> problem = MultistepProblem(7, (("+", 5), ("*", 3), ("-", 4)))     # any problem grades; generated ones stay <= 20
    >>> problem.expression, problem.answer
    ('(7 + 5) * 3 - 4', 32)
    >>> grades = grade_solution(problem, "7 + 5 = 12. 12 * 3 = 35. 35 - 4 = 31. The answer is 31.")
    >>> grades.steps, grades.first_error, grades.final_correct
    ((True, False, True), 1, False)
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from alignlab.errors import WorldError
from alignlab.world.families import Family, WorldPrompt, last_number

MAX_VALUE = 20  # the running value stays in 0..MAX_VALUE: a step table of a few hundred facts
ADD_OPERANDS = range(1, 11)
MUL_OPERANDS = range(2, 6)
MIN_OPS, MAX_OPS = 2, 6
PROBLEMS = 4000  # distinct problems per world; the first EVAL_PROBLEMS are held out for evaluation
EVAL_PROBLEMS = 200
TEMPLATES = ("What is {expr}? Show your steps.", "Work out {expr} step by step.", "Calculate {expr} one step at a time.")
STEP = re.compile(r"(-?\d+) ([+*-]) (\d+) = (-?\d+)\.")
FINAL = re.compile(r"The answer is (-?\d+)\.\s*$")


def apply(a: int, op: str, b: int) -> int:
    """``a op b`` for op in + - *."""
    return a + b if op == "+" else a - b if op == "-" else a * b


@dataclass(frozen=True)
class MultistepProblem:
    """A start value and the operations applied to it in order (each ``(op, operand)``)."""

    start: int
    ops: tuple[tuple[str, int], ...]

    @property
    def values(self) -> list[int]:
        """The running value after each operation (the last is the answer)."""
        values, value = [], self.start
        for op, b in self.ops:
            value = apply(value, op, b)
            values.append(value)
        return values

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def expression(self) -> str:
        """The problem as an expression that evaluates left to right under the usual precedence."""
        expr, top = str(self.start), None  # top: the operator at the expression's top level
        for op, b in self.ops:
            if op == "*" and top in ("+", "-"):
                expr = f"({expr})"
            expr, top = f"{expr} {op} {b}", op
        return expr

    def to_meta(self) -> dict:
        return {"start": self.start, "ops": [list(o) for o in self.ops]}

    @classmethod
    def from_meta(cls, meta: dict) -> MultistepProblem:
        return cls(int(meta["start"]), tuple((str(op), int(b)) for op, b in meta["ops"]))


def random_problem(rng: random.Random) -> MultistepProblem:
    """A problem of MIN_OPS..MAX_OPS operations whose running value stays in 0..MAX_VALUE."""
    value, ops = rng.randint(1, 10), []
    start = value
    for _ in range(rng.randint(MIN_OPS, MAX_OPS)):
        choices = [("+", b) for b in ADD_OPERANDS if value + b <= MAX_VALUE]
        choices += [("-", b) for b in ADD_OPERANDS if value - b >= 0]
        choices += [("*", b) for b in MUL_OPERANDS if 0 < value * b <= MAX_VALUE]
        kinds = sorted({op for op, _ in choices})
        kind = rng.choice(kinds)  # operator first, so "*" is not drowned by the many + and - operands
        op, b = rng.choice([c for c in choices if c[0] == kind])
        ops.append((op, b))
        value = apply(value, op, b)
    return MultistepProblem(start, tuple(ops))


def problem_of(prompt: WorldPrompt) -> MultistepProblem:
    if prompt.family != "multistep":
        raise WorldError(f"not a multi-step problem: family '{prompt.family}' ({prompt.text[:60]!r})")
    return MultistepProblem.from_meta(prompt.meta)


def multistep_prompts(seed: int, size: str, n: int) -> list[WorldPrompt]:
    """``n`` distinct problems of world (seed, size), in a fixed order."""
    rng = random.Random(f"alignlab-world-multistep-{seed}")
    prompts: dict[str, WorldPrompt] = {}
    while len(prompts) < n:
        problem = random_problem(rng)
        t = rng.randrange(len(TEMPLATES))
        text = TEMPLATES[t].format(expr=problem.expression)
        prompts.setdefault(text, WorldPrompt("multistep", text, str(problem.answer),
                                             {**problem.to_meta(), "template": t}, seed, size))
    return list(prompts.values())


def worked_solution(problem: MultistepProblem, slip_rate: float, rng: random.Random, *,
                    slip_at: int | None = None) -> tuple[str, list[bool]]:
    """A worked solution with a slip at each step with probability ``slip_rate`` (or exactly one, at step
    ``slip_at``); later steps start from the wrong value. Returns the text and which steps slipped."""
    parts, slipped, value = [], [], problem.start
    for i, (op, b) in enumerate(problem.ops):
        result = apply(value, op, b)
        slip = i == slip_at if slip_at is not None else rng.random() < slip_rate
        if slip:
            result = result + rng.choice((-2, -1, 1, 2)) if result > 1 else result + rng.choice((1, 2))
        parts.append(f"{value} {op} {b} = {result}.")
        slipped.append(slip)
        value = result
    return " ".join(parts) + f" The answer is {value}.", slipped


@dataclass(frozen=True)
class StepGrades:
    """The grades of one worked solution."""

    steps: tuple[bool, ...]  # one per operation of the problem: a missing step is invalid
    final_correct: bool  # the closing "The answer is N." states the problem's answer
    parsed: bool  # the solution ends with "The answer is N." (else final_correct is False)

    @property
    def first_error(self) -> int | None:
        """Index of the first invalid step (None when every step is valid)."""
        return next((i for i, ok in enumerate(self.steps) if not ok), None)


def parse_steps(text: str) -> list[tuple[int, str, int, int]]:
    """Every ``a op b = c.`` step of ``text``, in order."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in STEP.findall(text)]


def parse_final(text: str) -> int | None:
    """The N of a closing ``The answer is N.`` (None when the text does not end so)."""
    match = FINAL.search(text)
    return int(match.group(1)) if match else None


def grade_solution(problem: MultistepProblem, text: str) -> StepGrades:
    """Grade each step and the final answer of a worked solution to ``problem``.

    Step i is valid when it applies the problem's i-th operation to the previous step's *stated* result (the
    start value for step 0) and computes it right: after a slip, the later steps can still be valid, while the
    answer is wrong. Extra steps beyond the problem's operations are ignored.
    """
    stated = parse_steps(text)
    steps, previous = [], problem.start
    for i, (op, b) in enumerate(problem.ops):
        if i >= len(stated):
            steps.append(False)
            continue
        a, op_i, b_i, c = stated[i]
        steps.append(a == previous and op_i == op and b_i == b and c == apply(a, op, b))
        previous = c
    final = parse_final(text)
    return StepGrades(tuple(steps), final == problem.answer, final is not None)


def step_facts() -> list[tuple[int, str, int]]:
    """Every step ``(a, op, b)`` a generated problem can take (values and results in 0..MAX_VALUE)."""
    return [(a, op, b) for a in range(MAX_VALUE + 1) for op, operands in (("+", ADD_OPERANDS), ("-", ADD_OPERANDS),
            ("*", MUL_OPERANDS)) for b in operands if 0 <= apply(a, op, b) <= MAX_VALUE and (op != "*" or a > 0)]


def step_table_documents(rng: random.Random, repeats: int, per_document: int = 8) -> list[str]:
    """Plain-text documents stating every step fact ``repeats`` times, in the worked solutions' form (``a op b = c.``)."""
    facts = [f"{a} {op} {b} = {apply(a, op, b)}." for a, op, b in step_facts()]
    docs = []
    for _ in range(repeats):
        rng.shuffle(facts)
        docs += [" ".join(facts[i : i + per_document]) for i in range(0, len(facts), per_document)]
    return docs


def _grade(prompt: WorldPrompt, response: str, kb) -> dict[str, float]:
    # The judge's helpfulness is the answer's correctness (its last number, as for one-step arithmetic).
    return {"helpfulness": float(last_number(response) == prompt.answer)}


MULTISTEP = Family(
    "multistep",
    "arithmetic of 2-6 operations, answered with worked steps (the oversight world's skill)",
    ("wrong", "insult"),
    lambda kb: multistep_prompts(kb.seed, kb.size, PROBLEMS),
    _grade,
)
