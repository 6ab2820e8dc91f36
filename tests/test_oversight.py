"""Scalable-oversight protocols with scripted LMs: self-consistency votes and consistency checks, and both
commands on the toy world."""

from __future__ import annotations

import json

import pytest

from alignlab.cli import main
from alignlab.evaluate.interface import LM
from alignlab.oversight.consistency import (
    ConsistencyPair,
    precision_recall,
    run_checks,
    world_answer_parser,
    world_pairs,
)
from alignlab.oversight.self_consistency import last_number, majority_vote, self_consistency
from alignlab.world.datasets import World
from alignlab.world.families import parse_prompt


class ListLM(LM):
    """Answers the i-th prompt of a generate call with ``answers[text][j]`` for its j-th repeat."""

    def __init__(self, answers: dict[str, list[str]]):
        self.answers = answers

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, *, stop=None, max_tokens=256, temperature=0.0, top_p=1.0, seed=0):
        seen: dict[str, int] = {}
        out = []
        for p in prompts:
            text = p[-1]["content"] if isinstance(p, list) else p
            out.append(self.answers[text][seen.get(text, 0) % len(self.answers[text])])
            seen[text] = seen.get(text, 0) + 1
        return out


def test_majority_vote_breaks_ties_by_first_appearance() -> None:
    assert majority_vote(["8", "7", "7", "8"]) == ("8", 2)
    assert majority_vote([None, "3"]) == ("3", 1)


def test_self_consistency_accuracy_is_nested_over_the_same_samples() -> None:
    lm = ListLM({"q1": ["7", "8", "7", "9", "7"], "q2": ["5", "5", "4", "4", "4"], "q3": ["none", "none", "2", "2", "x"]})
    result = self_consistency(lm, ["q1", "q2", "q3"], ["7", "4", "2"], ks=[1, 3, 5], extract=last_number)
    # k=1: q1 right; k=3: q1 (7,8,7) right, q2 (5,5,4) wrong, q3 (-,-,2) right; k=5: all three right
    assert result.accuracy == {1: pytest.approx(1 / 3), 3: pytest.approx(2 / 3), 5: pytest.approx(1.0)}
    assert result.parse_rate == pytest.approx(12 / 15)
    with pytest.raises(ValueError, match="positive"):
        self_consistency(lm, ["q1"], ["7"], ks=[0], extract=last_number)


def test_consistency_checks_flag_disagreements_and_score_them_against_the_truth() -> None:
    pairs = [ConsistencyPair("commutativity", "2+3", "3+2", ("5", "5")),     # both right: no flag, no error
             ConsistencyPair("commutativity", "4+1", "1+4", ("5", "5")),     # one wrong: flagged, an error
             ConsistencyPair("commutativity", "6+1", "1+6", ("7", "7")),     # both wrong alike: an error, unseen
             ConsistencyPair("commutativity", "9+0", "0+9", ("9", "9"))]     # unparseable side: not flagged
    lm = ListLM({"2+3": ["5"], "3+2": ["5"], "4+1": ["5"], "1+4": ["6"], "6+1": ["8"], "1+6": ["8"],
                 "9+0": ["nine"], "0+9": ["9"]})
    summary = run_checks(lm, pairs, last_number)["summary"]["commutativity"]
    assert summary["flag_rate"] == 0.25 and summary["parse_rate"] == 0.75 and summary["error_rate"] == 0.75
    assert (summary["precision"], summary["recall"]) == (1.0, pytest.approx(1 / 3))
    assert precision_recall([False, False], [False, False]) == (None, None)


def test_world_pairs_ask_the_same_thing_two_ways() -> None:
    world = World(0, "small")
    pairs = world_pairs(world)
    assert {p.check for p in pairs} == {"commutativity", "paraphrase"}
    for pair in pairs:
        left, right = parse_prompt(pair.left[-1]["content"]), parse_prompt(pair.right[-1]["content"])
        assert left.text != right.text and left.answer == right.answer == pair.truth[0]
    parse = world_answer_parser(world)
    assert parse("Gexa is the capital of Volmark.") == "Gexa" and parse("I do not know.") is None


def test_oversee_commands_write_results_on_the_world(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "consistency"
    argv = ["oversee", "consistency", "--model", str(tiny_model_dir), "--world", "--output", str(out),
            "--set", "max_tokens=4"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((out / "results.json").read_text())
    assert set(record["results"]["summary"]) == {"commutativity", "paraphrase"} and record["seed"] == 0
    assert len(record["results"]["rows"]) == len(world_pairs(World(0, "small")))
    assert main(argv) == 0  # its own results.json is replaced
    (out / "notes.txt").write_text("mine")
    assert main(argv) == 2 and "did not write (notes.txt)" in capsys.readouterr().err
    sc = tmp_path / "sc"
    assert main(["oversee", "self-consistency", "--model", str(tiny_model_dir), "--world", "--output", str(sc),
                 "--set", "ks=[1,3]", "--set", "max_tokens=4", "--set", "families=[arithmetic]"]) == 0
    result = json.loads((sc / "results.json").read_text())["results"]
    assert set(result["accuracy"]) == {"1", "3"} and 0.0 <= result["parse_rate"] <= 1.0
    assert main(["oversee", "consistency", "--model", str(tiny_model_dir), "--output", str(tmp_path / "x")]) == 2
    assert "needs --world" in capsys.readouterr().err
