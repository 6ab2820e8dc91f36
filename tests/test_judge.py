"""LLM-as-judge: strict verdict parsing, the position-swap rule, several judges, reference-guided and
second-turn prompts, Bradley–Terry, and parse-failure counting through a scripted HTTP judge."""

import math
import re

import pytest
from conftest import SHARED_DATA, ScriptedLM
from test_eval_http import fake, serve  # noqa: F401  (the scripted fake server fixture)

from alignlab.errors import EvalError
from alignlab.evaluate import judge as J
from alignlab.evaluate.http_lm import OpenAILM

MT_BENCH = str(SHARED_DATA / "mt_bench_questions.jsonl")


def ScriptedJudge(rule):  # noqa: N802 (reads like the class it builds)
    """A judge answering each prompt with ``rule(text)``."""
    return ScriptedLM(lambda text, seed: rule(text))


def _reply(text, name):
    """The reply shown in position A or B of a pairwise prompt."""
    return re.search(
        rf"\[Assistant {name}\]\n.*### Assistant:\n(.*?)\n\[End of Assistant {name}\]", text, re.S
    ).group(1)


QUESTIONS = [
    J.Question(1, "writing", ["Write a haiku.", "Now make it sad."]),
    J.Question(2, "math", ["What is 2+3?", "And times 4?"], reference=["5", "20"]),
    J.Question(3, "writing", ["Name a colour."]),
]
LONG = {
    1: ["a long careful haiku", "a long sad haiku"],
    2: ["it is five", "twenty"],
    3: ["blue, like the sky"],
}
SHORT = {1: ["haiku", "sad"], 2: ["5", "20"], 3: ["red"]}


def test_strict_parsing():
    assert J.parse_score("Good answer. Rating: [[7]]") == 7
    assert J.parse_score("[[7]] and again [[7]]") == 7
    for bad in ("Rating: 7", "[[7]] or [[8]]", "[[11]]", "[[0]]", "[[7.5]]", ""):
        assert J.parse_score(bad) is None, bad
    assert J.parse_pair("so [[B]]") == "B" and J.parse_pair("[[C]]") == "C"
    for bad in ("[[A]] [[B]]", "[[a]]", "A is better", "[[D]]"):
        assert J.parse_pair(bad) is None, bad


def test_swap_rule_turns_position_bias_into_ties():
    assert (
        J.swap_rule("a", "a") == "a" and J.swap_rule("a", "b") == "tie" and J.swap_rule("a", "tie") == "tie"
    )
    assert J.swap_rule(None, "a") is None
    always_first = ScriptedJudge(lambda t: "[[A]]")
    res = J.compare_pairwise([always_first], QUESTIONS, LONG, SHORT)
    assert (res.wins, res.ties, res.losses) == (0, 3, 0) and res.win_rate == 0.5
    prefers_longer = ScriptedJudge(
        lambda t: "[[A]]" if len(_reply(t, "A")) > len(_reply(t, "B")) else "[[B]]"
    )
    res = J.compare_pairwise([prefers_longer], QUESTIONS, LONG, SHORT)
    assert (res.wins, res.ties, res.losses, res.parse_failures) == (3, 0, 0, 0) and res.win_rate == 1.0
    assert len(prefers_longer.seen) == 6  # both orders of every question


def test_parse_failures_are_counted_not_guessed_and_judges_vote():
    flaky = ScriptedJudge(
        lambda t: "no verdict" if "colour" in t else "[[A]]" if "long" in _reply(t, "A") else "[[B]]"
    )
    res = J.compare_pairwise([flaky], QUESTIONS, LONG, SHORT)
    assert res.parse_failures == 1 and 3 not in res.verdicts and res.wins + res.ties + res.losses == 2
    for_b = ScriptedJudge(lambda t: "[[A]]" if len(_reply(t, "A")) < len(_reply(t, "B")) else "[[B]]")
    res = J.compare_pairwise([flaky, for_b, flaky], QUESTIONS, LONG, SHORT)
    assert res.verdicts[1] == "a" and res.verdicts[3] == "b"  # two judges against one; one judge alone
    res = J.compare_pairwise([flaky, for_b], QUESTIONS, LONG, SHORT)
    assert res.verdicts[1] == "tie"  # no majority


def test_single_grading_reference_and_second_turn():
    scorer = ScriptedJudge(lambda t: "[[9]]" if "careful" in t or "twenty" in t else "[[2]]")
    res = J.grade_single([scorer, ScriptedJudge(lambda t: "[[4]]")], QUESTIONS, LONG)
    assert res.scores == {1: 6.5, 2: 3.0, 3: 3.0} and res.mean == pytest.approx(12.5 / 3)
    assert "Reference" in scorer.seen[1] and "5" in scorer.seen[1] and "Reference" not in scorer.seen[0]
    scorer.seen.clear()
    res = J.grade_single([scorer], QUESTIONS, LONG, turn=1)
    assert set(res.scores) == {1, 2}  # question 3 has one turn
    assert (
        "Write a haiku." in scorer.seen[0] and "a long sad haiku" in scorer.seen[0]
    )  # the whole conversation
    assert "[End of reference]" in scorer.seen[1] and "20" in scorer.seen[1]


def test_bradley_terry():
    # two models: the MLE odds are the ratio of (wins + half ties), prior included
    out = J.bradley_terry([("x", "y", 1.0)] * 3 + [("x", "y", 0.0)], prior=0.0)
    assert out["x"] - out["y"] == pytest.approx(math.log(3.0), abs=1e-6)
    outcomes = [
        ("a", "b", 1.0),
        ("a", "b", 1.0),
        ("b", "c", 1.0),
        ("a", "c", 0.5),
        ("c", "b", 0.0),
        ("a", "c", 1.0),
    ]
    strengths = J.bradley_terry(outcomes)
    assert list(strengths) == ["a", "b", "c"] and all(math.isfinite(v) for v in strengths.values())
    # the MLE satisfies W_i = sum_j n_ij p_i / (p_i + p_j)
    p = {m: math.exp(v) for m, v in strengths.items()}
    wins = {"a": 3.5 + 0.1, "b": 2 + 0.1, "c": 0.5 + 0.1}
    games = {frozenset("ab"): 2.1, frozenset("bc"): 2.1, frozenset("ac"): 2.1}
    for m in p:
        expected = sum(n * p[m] / (p[m] + p[o]) for pair, n in games.items() if m in pair for o in pair - {m})
        assert wins[m] == pytest.approx(expected, rel=1e-6)


def test_mt_bench_questions_and_answers():
    questions = J.load_questions(MT_BENCH)
    assert len(questions) == 80 and all(len(q.turns) == 2 for q in questions)
    echo = ScriptedJudge(lambda t: f"answer to: {t[:10]}")
    answers = J.answer_questions(echo, questions[:2], max_tokens=8)
    assert all(len(a) == 2 for a in answers.values())


def test_malformed_verdicts_through_http(fake):  # noqa: F811
    def chat(text):
        return {"choices": [{"message": {"role": "assistant", "content": text}}]}

    script, url = fake(
        [
            (200, chat("Solid. [[8]]")),
            (200, chat("I cannot decide")),
            (500, b"boom"),
            (200, chat("[[3]] or maybe [[4]]")),
            (200, b"<html>garbage"),
            (200, chat("ok [[5]]")),
        ]
    )
    judge = OpenAILM(url, kind="chat", max_concurrency=1, backoff=0.001)
    qs = [J.Question(i, "writing", [f"q{i}"]) for i in range(4)]
    res = J.grade_single([judge], qs, {i: [f"a{i}"] for i in range(4)})
    assert res.scores == {0: 8.0, 3: 5.0} and res.parse_failures == 2
    assert [j["raw"] for j in res.judgments if j["score"] is None] == [
        "I cannot decide",
        "[[3]] or maybe [[4]]",
    ]


def test_rank_models_orders_models_by_known_win_rates():
    # The judge prefers the longer reply, so every verdict is known: per question, answer lengths are
    # b: 1, 9, 1; m: 9, 1, 9; x: 5, 5, 5. Then m beats b and x on 2 of 3 questions, x beats b on 2 of 3.
    lengths = {"b": (1, 9, 1), "m": (9, 1, 9), "x": (5, 5, 5)}
    answers = {name: {q.question_id: ["w" * n] for q, n in zip(QUESTIONS, ns)} for name, ns in lengths.items()}
    longer = ScriptedJudge(lambda t: "[[A]]" if len(_reply(t, "A")) > len(_reply(t, "B")) else "[[B]]")
    ranking = J.rank_models([longer], QUESTIONS, answers)
    table = {pair: (row["win"], row["tie"], row["loss"]) for pair, row in ranking["pairs"].items()}
    assert table == {"b vs m": (1, 0, 2), "b vs x": (1, 0, 2), "m vs x": (2, 0, 1)}
    assert ranking["pairs"]["m vs x"]["win_rate"] == pytest.approx(2 / 3)
    assert list(ranking["bradley_terry"]) == ["m", "x", "b"] and ranking["parse_failures"] == 0
    # Bradley–Terry fitted on exactly these games (wins of the first-named model as s = 1)
    games = [("b", "m", 1.0), ("b", "m", 0.0), ("b", "m", 0.0), ("b", "x", 1.0), ("b", "x", 0.0), ("b", "x", 0.0),
             ("m", "x", 1.0), ("m", "x", 1.0), ("m", "x", 0.0)]
    expected = J.bradley_terry(games)
    assert ranking["bradley_terry"] == pytest.approx(expected)
    with pytest.raises(EvalError, match="no pairwise verdict"):
        J.rank_models([ScriptedJudge(lambda t: "undecided")], QUESTIONS, answers)
