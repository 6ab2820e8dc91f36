"""Factored cognition, IDA and sandwiching with scripted LMs: the sub-questions asked and in what order, what is
combined and distilled, the resume after a failed iteration; and the sandwiching command on a tiny model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_oversight_debate import ScriptLM

from alignlab.cli import main
from alignlab.errors import OversightError
from alignlab.oversight import decomposition as C
from alignlab.oversight.debate import DebateItem
from alignlab.world.skills.multistep import MultistepProblem, apply, parse_final, worked_solution


def solve(text: str, slip: int = 0) -> str:
    """A worked solution of the problem a question states (evaluated left to right), ``slip`` added to step 0."""
    expr = text.split("What is ")[1].split("?")[0].replace("(", "").replace(")", "").split()
    value, steps = int(expr[0]), []
    for i in range(1, len(expr), 2):
        result = apply(value, expr[i], int(expr[i + 1])) + (slip if i == 1 else 0)
        steps.append(f"{value} {expr[i]} {expr[i + 1]} = {result}.")
        value = result
    return " ".join(steps) + f" The answer is {value}."


def test_long_problems_are_long_distinct_in_range_and_disjoint_from_the_held_out_ones() -> None:
    train = C.long_problems(0, "train", 50, 7, 9)
    held_out = C.long_problems(0, "eval", C.EVAL_LONG, 7, 9)
    assert {len(p.ops) for p in train} <= {7, 8, 9} and len({p.expression for p in train}) == 50
    assert all(0 <= v <= 20 for p in train for v in p.values)
    assert not {p.expression for p in train} & {p.expression for p in held_out}
    assert C.long_problems(0, "eval", 10, 7, 9) == held_out[:10]


def test_amplification_asks_the_pieces_in_order_each_from_the_previous_stated_answer() -> None:
    problem = MultistepProblem(3, (("+", 4), ("*", 2), ("-", 5), ("+", 1), ("+", 2)))   # 7, 14, 9, 10, 12
    lm = ScriptLM(lambda text, k: solve(text, slip=1 if text.startswith("What is (3 + 4)") else 0))
    solutions, parse_rate = C.amplify(lm, [problem], parts=2)
    asked = [text for text, _ in lm.asked]
    # the first piece has 3 operations; the model slips (7 -> 8), so the second piece starts from its 16 - 5 = 11,
    # restated as 10 + 1 (the world's problems start from 1..10); the restating step is not part of the solution
    assert asked == [C.question(MultistepProblem(3, problem.ops[:3])),
                     C.question(MultistepProblem(10, (("+", 1), *problem.ops[3:])))]
    assert solutions == ["3 + 4 = 8. 8 * 2 = 16. 16 - 5 = 11. 11 + 1 = 12. 12 + 2 = 14. The answer is 14."]
    assert C.sub_question(0, (("+", 3),)) == (MultistepProblem(1, (("-", 1), ("+", 3))), 1)
    assert C.sub_question(7, (("+", 3),)) == (MultistepProblem(7, (("+", 3),)), 0)
    assert parse_rate == 1.0 and all(t == 0.0 for _, t in lm.asked)
    right = ScriptLM(lambda text, k: solve(text))
    assert C.accuracy([problem], C.amplify(right, [problem], parts=3)[0])["accuracy"] == 1.0
    assert len(right.asked) == 3


def test_an_unparseable_sub_answer_stops_the_chain_and_is_counted() -> None:
    problems = [MultistepProblem(3, (("+", 4), ("*", 2), ("-", 5), ("+", 1))),
                MultistepProblem(2, (("+", 2), ("+", 2), ("+", 2), ("+", 2)))]
    lm = ScriptLM(lambda text, k: "no idea" if text.startswith("What is 2 +") else solve(text))
    solutions, parse_rate = C.amplify(lm, problems, parts=2)
    assert solutions[1] == "" and parse_final(solutions[0]) == problems[0].answer
    assert parse_rate == pytest.approx(2 / 3) and len(lm.asked) == 3   # the failed chain asks no second piece
    rows = C.distillation_rows(problems, solutions)
    assert len(rows) == 1 and rows[0]["messages"][1]["content"] == solutions[0]
    assert rows[0]["messages"][0]["content"] == C.question(problems[0])


def fake_ida_tools(fail_at: int | None = None):
    """``load`` gives a model that solves problems of at most ``3 + 3 * trained iterations`` operations; ``finetune``
    writes a directory (and fails at iteration ``fail_at``, as a server going down would)."""
    calls = {"finetune": 0}

    def load(path):
        level = 3 + 3 * int(Path(path).name.removeprefix("iter")) if "iter" in Path(path).name else 3
        return ScriptLM(lambda text, k: solve(text) if text.count(" ", 0, text.index("?")) <= 2 * level + 2
                        else "The answer is 0.")

    def finetune(kind, rows, init, output, **kwargs):
        calls["finetune"] += 1
        if fail_at is not None and calls["finetune"] == fail_at:
            raise OversightError("the server went away")
        assert kind == "sft" and rows
        Path(output).mkdir(parents=True)
        (Path(output) / "rows.json").write_text(json.dumps(rows))
        return Path(output)

    return load, finetune, calls


def test_ida_distils_amplified_solutions_and_resumes_after_the_last_finished_iteration(tmp_path) -> None:
    kwargs = dict(world_seed=0, min_ops=[4, 7], max_ops=[6, 9], parts=3, train_problems=6, eval_problems=5)
    load, finetune, _ = fake_ida_tools(fail_at=2)
    with pytest.raises(OversightError, match="went away"):
        C.ida("base", tmp_path, load=load, finetune=finetune, **kwargs)
    first = json.loads((tmp_path / "iter1" / "iteration.json").read_text())
    assert not (tmp_path / "iter2").exists()
    # M0 solves 3 operations: alone it fails 4-6, amplified (three pieces of 1-2) it solves them; M1 then solves 4-6
    assert first["direct_before"]["4-6"]["accuracy"] == 0.0 and first["amplified"]["accuracy"] == 1.0
    assert first["direct_after"]["4-6"]["accuracy"] == 1.0 and first["direct_after"]["7-9"]["accuracy"] == 0.0
    rows = json.loads((tmp_path / "iter1" / "rows.json").read_text())
    assert len(rows) == 6 and all(parse_final(r["messages"][1]["content"]) is not None for r in rows)
    load, finetune, calls = fake_ida_tools()
    records = C.ida("base", tmp_path, load=load, finetune=finetune, **kwargs)
    assert calls["finetune"] == 1 and records[0] == first          # iteration 1 is read back, not redone
    assert records[1]["amplified"]["accuracy"] == 1.0 and records[1]["direct_after"]["7-9"]["accuracy"] == 1.0
    with pytest.raises(OversightError, match="one range per iteration"):
        C.ida("base", tmp_path / "x", load=load, finetune=finetune, **{**kwargs, "min_ops": [4]})


def test_sandwiching_assistance_critiques_the_solution_that_disagrees_with_the_decomposition() -> None:
    problem = MultistepProblem(3, (("+", 4), ("*", 2), ("-", 5), ("+", 1)))
    items = C.sandwich_items([problem] * 20, seed=0)
    assert {it.truth for it in items} == {"A", "B"}
    for it in items:
        right = it.answer_a if it.truth == "A" else it.answer_b
        assert right == worked_solution(problem, 0.0, random.Random(0))[0] and parse_final(it.answer_a) != parse_final(it.answer_b)
    right_amp, _ = C.amplify(ScriptLM(lambda text, k: solve(text)), [problem], parts=2)
    turns = C.decomposition_assistance(right_amp, items[:1])[0]
    wrong_side = "B" if items[0].truth == "A" else "A"
    assert dict((side, text) for side, text in turns)[items[0].truth] == C.P.write_critique("arithmetic_slip")
    assert dict(turns)[wrong_side].startswith("Fault: none.")   # the right answer is not attacked
    assert C.decomposition_assistance([""], items[:1]) == [[]]
    assert C.assistant_choice(right_amp * 2, items[:2]) == 1.0 and C.assistant_choice(["", ""], items[:2]) == 0.0
    item = DebateItem(C.as_prompt(problem), "x", "y", "A")
    critic = ScriptLM(lambda text, k: "Fault: arithmetic slip. It gets the arithmetic wrong." if "Answer: y" in text
                      else "unparseable")
    turns, parse_rate = C.critique_assistance(critic, [item])
    assert turns == [[("A", "Fault: arithmetic slip. It gets the arithmetic wrong.")]] and parse_rate == 0.5


def test_sandwiching_command_on_a_tiny_model(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "sandwich"
    assert main(["oversee", "sandwiching", "--model", str(tiny_model_dir), "--world", "--output", str(out),
                 "--set", "score_limit=2", "--set", "problems=3", "--set", "min_ops=7", "--set", "max_ops=8"]) == 0
    result = json.loads((out / "results.json").read_text())["results"]
    assert [r["method"] for r in result["rows"]] == ["overseer-alone", "overseer+critique", "overseer+decomposition"]
    assert result["expert"] == 1.0 and 0.0 <= result["assistant_alone"] <= 1.0
