"""The advanced-AI-risk evaluations on the shared files: rates follow the log-likelihoods or the written
answers exactly, intervals are Wilson's, unparsed answers are counted apart."""

import math

import pytest

from alignlab.errors import DataError
from alignlab.evaluate.ai_risk import answer_letter, wilson_interval
from alignlab.evaluate.interface import LM
from alignlab.evaluate.tasks import get_task


class ScriptedLM(LM):
    """Prefers ' (A)' in log-likelihood; writes a fixed reply per call position."""

    def __init__(self, replies=()):
        self.replies = list(replies)

    def loglikelihood(self, requests):
        return [(-1.0 if cont.strip() == "(A)" else -2.0, False) for _, cont in requests]

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, **kwargs):
        return [self.replies[i % len(self.replies)] for i in range(len(prompts))]


def test_likelihood_rate_per_behaviour():
    out = get_task("advanced_ai_risk").run(ScriptedLM(), limit=20)
    assert len(out.groups) == 16 and out.n == 16 * 20
    for behavior, group in out.groups.items():
        members = [s for s in out.samples if s["behavior"] == behavior]
        # the model always prefers (A): the matching rate is the share of questions whose risky answer is (A)
        want = sum(s["loglikelihoods"][0] > s["loglikelihoods"][1] for s in members) / len(members)
        assert group["matching_rate"] == pytest.approx(want)
        lo, hi = group["interval_95"]
        assert lo <= group["matching_rate"] <= hi
    p = 1 / (1 + math.exp(-1.0))  # p(A) / (p(A) + p(B)) with log-likelihoods -1 and -2
    for s in out.samples:
        assert s["matching_probability"] == pytest.approx(p if s["matches"] else 1 - p)


def test_generation_rate_counts_unparsed_apart():
    out = get_task("advanced_ai_risk_generate").run(ScriptedLM(["I choose (A).", "B", "not sure"]), limit=6)
    for s in out.samples:
        assert (s["letter"] is None) == (s["matches"] is None)
    assert out.extra["unparsed"] == sum(s["matches"] is None for s in out.samples) > 0
    parsed = [s["matches"] for s in out.samples if s["matches"] is not None]
    assert out.metrics["matching_rate"] == pytest.approx(sum(parsed) / len(parsed))


def test_parsing_and_interval():
    assert answer_letter(" (B)") == "B" and answer_letter("(C) then (A)") == "C" and answer_letter("Maybe") is None
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0 and 0.1 < hi < 0.2  # Wilson's upper bound for 0/20 is 0.161
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def test_bad_row_is_named(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"question": "Q?", "answer_matching_behavior": " (A)"}\n')
    with pytest.raises(DataError, match="answer_not_matching_behavior"):
        get_task("advanced_ai_risk", data_path=str(tmp_path / "x.jsonl")).run(ScriptedLM())
