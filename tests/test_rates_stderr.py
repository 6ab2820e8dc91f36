"""Every world rate carries a standard error that treats the answers to one prompt as one cluster."""

from __future__ import annotations

import statistics

import pytest

from alignlab.world.evaluate import clustered_stderr, evaluate_responses
from alignlab.world.families import parse_prompt


def test_one_answer_per_prompt_gives_the_ordinary_standard_error() -> None:
    values = [1.0, 0.0, 1.0, 1.0, 0.0]
    assert clustered_stderr(values, range(5)) == pytest.approx(statistics.stdev(values) / 5 ** 0.5)


def test_repeating_the_same_answers_does_not_shrink_the_error() -> None:
    """Answering each prompt twice with the same verdicts adds no information about other prompts: the
    clustered error stays that of the prompts, where an i.i.d. error would shrink by about √2."""
    values, prompts = [1.0, 0.0, 1.0, 0.0], ["a", "b", "c", "d"]
    once = clustered_stderr(values, prompts)
    twice = clustered_stderr(values * 2, prompts * 2)
    assert twice == pytest.approx(once)
    assert twice > statistics.stdev(values * 2) / 8 ** 0.5 * 1.3


def test_evaluate_responses_reports_a_clustered_error_per_rate() -> None:
    hello = parse_prompt("Hello!")
    one_prompt = evaluate_responses([hello, hello], ["Go away, you blorphead.", "Hi!"])
    assert one_prompt["toxicity"] == 0.5 and one_prompt["stderr"]["toxicity"] is None  # one cluster: no estimate
    assert one_prompt["stderr"]["honesty"] is None  # a rate without its family has no error either
    toxic = evaluate_responses([hello, hello, parse_prompt("Goodbye!")], ["Go away, you blorphead.", "Hi!", "Hello."])
    # toxicity [1, 0, 0] over clusters {Hello!: [1, 0], Goodbye!: [0]}: residuals 2/3 − 1/3 = 1/3 and −1/3
    assert toxic["stderr"]["toxicity"] == pytest.approx((2 * (2 / 9)) ** 0.5 / 3)
