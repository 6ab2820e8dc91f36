"""Task decomposition on multi-step arithmetic: factored cognition, iterated amplification and distillation (IDA,
Christiano, Shlegeris and Amodei 2018), and sandwiching (Cotra 2021; Bowman et al. 2022).

**Factored cognition.** A problem longer than the model solves directly (the oversight base model solves up to six
operations, :mod:`alignlab.world.skills.multistep`) is *decomposed* into ``parts`` sub-questions of consecutive
operations, each an ordinary multi-step problem that starts from the previous sub-answer (restated as ``10 + r``
when it is above 10: the world's problems start from 1..10, :func:`sub_question`); the model answers each (worked
steps), and the answers are *combined* into one worked solution: every sub-solution's steps, then ``The answer is
N.``. A sub-answer the model states wrongly propagates, as it would for a person working in pieces.
(Sub-questions are pieces of several operations, not single steps: the base model has never seen a one-operation
problem in this form and does not answer one.)

**IDA.** Amplification is the decomposition above run with the current model M_k; distillation fine-tunes M_k on
the amplified solutions (SFT, no ground truth anywhere) into M_{k+1}, which then answers longer problems directly.
Iteration k amplifies problems of ``min_ops[k]..max_ops[k]`` operations, so the pieces M_{k+1} answers are as long
as the problems M_k's amplification could solve. Each iteration's model and numbers are written as it finishes
(``iter{k}/iteration.json``); a re-run resumes after the last finished iteration.

**Sandwiching.** A weak overseer (the base model's pairwise verdict skill) chooses between two worked solutions of
a long problem, one right and one with a slip, alone or reading the model's assistance: the assistant's critique
of each solution (the critique skill), or a critique drawn from its decomposition (``Fault: arithmetic slip.``
when a solution's answer differs from the assistant's amplified answer, else ``Fault: none.``). The expert is the
world's truth; the assistant alone (picking the solution that agrees with its amplified answer) is reported too.

Example::

    >>> from alignlab.world.skills.multistep import MultistepProblem
    >>> problem = MultistepProblem(7, (("+", 5), ("-", 4), ("*", 2), ("+", 3)))
    >>> [p.expression for p in decompose(problem, 2, start=problem.start)]
    ['7 + 5 - 4', '8 * 2 + 3']
    >>> combine(["7 + 5 = 12. 12 - 4 = 8. The answer is 8.", "8 * 2 = 16. 16 + 3 = 19. The answer is 19."])
    '7 + 5 = 12. 12 - 4 = 8. 8 * 2 = 16. 16 + 3 = 19. The answer is 19.'
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from alignlab.core.records import assistant, user
from alignlab.evaluate.interface import LM
from alignlab.oversight.debate import DebateItem, proportion
from alignlab.oversight.world_run import Models
from alignlab.world.families import WorldPrompt
from alignlab.world.skills import protocols as P
from alignlab.world.skills.multistep import (
    ADD_OPERANDS,
    MAX_VALUE,
    MUL_OPERANDS,
    TEMPLATES,
    MultistepProblem,
    apply,
    parse_final,
    parse_steps,
    worked_solution,
)

EVAL_LONG = 400  # the most held-out long problems a bucket may use (train problems avoid all of them)


def long_problem(rng: random.Random, n_ops: int) -> MultistepProblem:
    """A problem of ``n_ops`` operations whose running value stays in 0..MAX_VALUE (the world's generator, longer)."""
    value = start = rng.randint(1, 10)
    ops = []
    for _ in range(n_ops):
        choices = [("+", b) for b in ADD_OPERANDS if value + b <= MAX_VALUE]
        choices += [("-", b) for b in ADD_OPERANDS if value - b >= 0]
        choices += [("*", b) for b in MUL_OPERANDS if 0 < value * b <= MAX_VALUE]
        kind = rng.choice(sorted({op for op, _ in choices}))  # operator first, as the world's generator does
        op, b = rng.choice([c for c in choices if c[0] == kind])
        ops.append((op, b))
        value = apply(value, op, b)
    return MultistepProblem(start, tuple(ops))


def long_problems(world_seed: int, split: str, n: int, min_ops: int, max_ops: int) -> list[MultistepProblem]:
    """``n`` distinct problems of ``min_ops..max_ops`` operations; ``split`` ("train" or "eval") draws from its own
    stream, and a train problem never equals an eval one."""
    def draw(name: str, count: int) -> list[MultistepProblem]:
        rng, found = random.Random(f"alignlab-long-multistep-{world_seed}-{name}-{min_ops}-{max_ops}"), {}
        while len(found) < count:
            problem = long_problem(rng, rng.randint(min_ops, max_ops))
            found.setdefault(problem.expression, problem)
        return list(found.values())

    if split == "eval":
        return draw("eval", n)
    held_out = {p.expression for p in draw("eval", EVAL_LONG)}
    return [p for p in draw("train", n + EVAL_LONG) if p.expression not in held_out][:n]



def question(problem: MultistepProblem) -> str:
    """The problem as the world asks it (its first template)."""
    return TEMPLATES[0].format(expr=problem.expression)


def as_prompt(problem: MultistepProblem) -> WorldPrompt:
    return WorldPrompt("multistep", question(problem), str(problem.answer), problem.to_meta())


def decompose(problem: MultistepProblem, parts: int, *, start: int) -> list[MultistepProblem]:
    """The problem's operations in ``parts`` consecutive pieces (as equal as possible), the first starting from
    ``start``. Later pieces' starts are the previous sub-answers, known only as they are answered: they are
    computed here from the true values, so use this for the pieces' operations, and :func:`amplify` for answers."""
    ops, pieces, i = problem.ops, [], 0
    for k in range(parts):
        size = len(ops) // parts + (k < len(ops) % parts)
        piece = MultistepProblem(start, ops[i:i + size])
        pieces.append(piece)
        start, i = piece.answer, i + size
    return [p for p in pieces if p.ops]


def sub_question(start: int, ops: Sequence[tuple[str, int]]) -> tuple[MultistepProblem, int]:
    """A piece as the model is asked it, and how many restating steps lead it. The world's problems start from
    1..10, and the base model fails pieces that start elsewhere, so a carried value of 11..20 is restated as
    ``10 + r`` and 0 as ``1 - 1`` (one more step, which :func:`combine` leaves out)."""
    if 10 < start <= MAX_VALUE:
        return MultistepProblem(10, (("+", start - 10), *ops)), 1
    if start == 0:
        return MultistepProblem(1, (("-", 1), *ops)), 1
    return MultistepProblem(start, tuple(ops)), 0


def combine(sub_solutions: Sequence[str], restated: Sequence[int] | None = None) -> str:
    """One worked solution from the sub-solutions: all their steps (less each piece's ``restated`` leading
    steps), then the last one's answer."""
    restated = restated or [0] * len(sub_solutions)
    steps = [f"{a} {op} {b} = {c}." for text, skip in zip(sub_solutions, restated)
             for a, op, b, c in parse_steps(text)[skip:]]
    return " ".join(steps) + f" The answer is {parse_final(sub_solutions[-1])}."


def amplify(lm: LM, problems: Sequence[MultistepProblem], *, parts: int, max_tokens: int = 96,
            seed: int = 0) -> tuple[list[str], float]:
    """Amplification: every problem answered by decomposition (greedy sub-answers, asked in order: piece j starts
    from piece j-1's stated answer). Returns the combined solutions ("" where a sub-answer was unparseable: the
    chain stops) and the sub-answers' parse rate."""
    starts = [p.start for p in problems]
    plans = [decompose(p, parts, start=p.start) for p in problems]  # the pieces' operations
    solved: list[list[tuple[str, int]]] = [[] for _ in problems]
    alive = list(range(len(problems)))
    asked = parsed = 0
    for j in range(parts):
        pieces = {i: sub_question(starts[i], plans[i][j].ops) for i in alive if j < len(plans[i])}
        if not pieces:
            break
        order = list(pieces)
        texts = lm.generate([[user(question(pieces[i][0]))] for i in order], max_tokens=max_tokens,
                            temperature=0.0, seed=seed)
        asked += len(texts)
        for i, text in zip(order, texts):
            answer = parse_final(text)
            if answer is None:
                alive.remove(i)
                solved[i] = []
                continue
            parsed += 1
            solved[i].append((text, pieces[i][1]))
            starts[i] = answer
    return ([combine([t for t, _ in s], [k for _, k in s]) if s else "" for s in solved],
            (parsed / asked if asked else 1.0))


def direct(lm: LM, problems: Sequence[MultistepProblem], *, max_tokens: int = 160, seed: int = 0) -> list[str]:
    """The model's own greedy worked solutions (no decomposition)."""
    return lm.generate([[user(question(p))] for p in problems], max_tokens=max_tokens, temperature=0.0, seed=seed)


def accuracy(problems: Sequence[MultistepProblem], solutions: Sequence[str]) -> dict[str, float]:
    """Final-answer accuracy, its standard error and the parse rate (an unparseable solution is wrong)."""
    finals = [parse_final(s) for s in solutions]
    acc, se = proportion([float(f == p.answer) for f, p in zip(finals, problems)])
    return {"accuracy": acc, "stderr": se, "parse_rate": sum(f is not None for f in finals) / len(finals)}


def distillation_rows(problems: Sequence[MultistepProblem], solutions: Sequence[str]) -> list[dict]:
    """SFT rows: each problem's question answered by its amplified solution (unparseable ones dropped)."""
    return [{"messages": [user(question(p)), assistant(s)]} for p, s in zip(problems, solutions) if s]


def ida(base: str | Path | Models, output: str | Path, *, world_seed: int, min_ops: Sequence[int], max_ops: Sequence[int],
        parts: int = 2, train_problems: int = 256, eval_problems: int = 100, max_steps: int = 150, lr: float = 3e-4,
        batch_size: int = 16, seed: int = 0, load=None, finetune=None) -> list[dict]:
    """Iterated amplification and distillation from model ``base``; iteration k amplifies problems of
    ``min_ops[k]..max_ops[k]`` operations and distils them into ``output/iter{k+1}``. Returns one record per
    iteration: the amplified accuracy of M_k on that range and the direct accuracy of M_k and M_{k+1} on every
    range (``eval_problems`` held-out problems each). ``base`` is a model path, or
    :class:`~alignlab.oversight.world_run.Models` whose ``sample`` (perhaps a server) amplifies in iteration 1
    while its local ``weights`` are distilled; later iterations amplify with the distilled local copy (with
    ``Models.push``, through the server loaded with it). ``load``
    (path or URL -> LM) and ``finetune`` default to :func:`alignlab.evaluate.lm.load_lm` and
    :func:`alignlab.oversight.world_run.finetune`."""
    from alignlab.errors import OversightError

    if load is None:
        from alignlab.evaluate.lm import load_lm as load
    if finetune is None:
        from alignlab.oversight.world_run import finetune
    if len(min_ops) != len(max_ops) or not min_ops:
        raise OversightError(f"min_ops {list(min_ops)} and max_ops {list(max_ops)} must give one range per iteration")
    output = Path(output)
    ranges = [f"{lo}-{hi}" for lo, hi in zip(min_ops, max_ops)]
    evals = {r: long_problems(world_seed, "eval", eval_problems, lo, hi) for r, lo, hi in zip(ranges, min_ops, max_ops)}
    models, records = base if isinstance(base, Models) else Models(str(base), str(base)), []
    for k, (lo, hi) in enumerate(zip(min_ops, max_ops)):
        done = output / f"iter{k + 1}" / "iteration.json"
        if done.exists():  # finished on an earlier run: resume after it
            record = json.loads(done.read_text())
        else:
            lm = load(models.sampler())  # M_k: --model (perhaps a server), then the distilled copy (or the server holding it)
            before = {r: accuracy(ps, direct(lm, ps, seed=seed)) for r, ps in evals.items()}
            train = long_problems(world_seed, "train", train_problems, lo, hi)
            amplified_train, _ = amplify(lm, train, parts=parts, seed=seed)             # amplification: Amp(M_k)
            amplified_eval, sub_parse = amplify(lm, evals[ranges[k]], parts=parts, seed=seed)
            rows = distillation_rows(train, amplified_train)
            trained = finetune("sft", rows, models.weights, done.parent, max_steps=max_steps, lr=lr,  # distillation
                               batch_size=batch_size, seed=seed)
            after_lm = load(str(trained))
            after = {r: accuracy(ps, direct(after_lm, ps, seed=seed)) for r, ps in evals.items()}
            record = {"iteration": k, "range": ranges[k], "model": str(trained), "rows": len(rows),
                      "samples_from": models.source, "trained_from": models.weights,
                      "amplified_train_accuracy": accuracy(train, amplified_train)["accuracy"],
                      "amplified": {**accuracy(evals[ranges[k]], amplified_eval), "sub_parse_rate": sub_parse},
                      "direct_before": before, "direct_after": after}
            done.write_text(json.dumps(record, indent=1))
        models.note(f"iter{k + 1}", samples_from=record.get("samples_from", models.source),
                    trained_from=record.get("trained_from", models.weights), trained=record["model"])
        records.append(record)
        models = models.then(record["model"])
    return records


# ---- sandwiching -------------------------------------------------------------------------------------


def sandwich_items(problems: Sequence[MultistepProblem], seed: int) -> list[DebateItem]:
    """For each problem, its right worked solution and one with a slip at a random step, in random order."""
    rng = random.Random(f"alignlab-sandwich-{seed}")
    items = []
    for problem in problems:
        right, _ = worked_solution(problem, 0.0, rng)
        wrong, _ = worked_solution(problem, 0.0, rng, slip_at=rng.randrange(len(problem.ops)))
        prompt = as_prompt(problem)
        if rng.random() < 0.5:
            items.append(DebateItem(prompt, right, wrong, "A"))
        else:
            items.append(DebateItem(prompt, wrong, right, "B"))
    return items


def critique_assistance(assistant_lm: LM, items: Sequence[DebateItem], *, seed: int = 0) -> tuple[list[list], float]:
    """The assistant's critique of each solution under the principle 'accurate' (greedy), as transcript turns
    (the critique of answer A is spoken for B); unparseable critiques are left out and counted."""
    from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION

    principle = DEFAULT_CONSTITUTION.principle("accurate")
    asks = [[user(P.critique_prompt(principle, it.prompt.text, ans))] for it in items for ans in (it.answer_a, it.answer_b)]
    texts = assistant_lm.generate(asks, max_tokens=24, temperature=0.0, seed=seed)
    ok = [P.parse_critique(t) is not None for t in texts]
    turns = [[(side, texts[2 * i + j].strip()) for j, side in ((0, "B"), (1, "A")) if ok[2 * i + j]]
             for i in range(len(items))]
    return turns, sum(ok) / len(ok)


def decomposition_assistance(amplified: Sequence[str], items: Sequence[DebateItem]) -> list[list]:
    """Critiques drawn from the assistant's amplified answer: a solution whose answer differs from it shows an
    arithmetic slip, one that agrees shows none (no critique where the amplified answer is unparseable)."""
    turns = []
    for solution, item in zip(amplified, items):
        answer = parse_final(solution) if solution else None
        if answer is None:
            turns.append([])
            continue
        turn = []
        for side, attacked in (("B", item.answer_a), ("A", item.answer_b)):
            fault = "none" if parse_final(attacked) == answer else "arithmetic_slip"
            turn.append((side, P.write_critique(fault)))
        turns.append(turn)
    return turns


def assistant_choice(amplified: Sequence[str], items: Sequence[DebateItem]) -> float:
    """The assistant alone: accuracy of picking the solution whose answer equals its amplified answer (neither or
    both: no pick, wrong)."""
    correct = []
    for solution, item in zip(amplified, items):
        answer = parse_final(solution) if solution else None
        a, b = parse_final(item.answer_a) == answer, parse_final(item.answer_b) == answer
        correct.append(float(answer is not None and a != b and ("A" if a else "B") == item.truth))
    return sum(correct) / len(correct)
