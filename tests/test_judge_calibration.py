"""Judges measured against the world's true reward: the measures recover what is known about scripted and
simulated judges (a noise-free annotator agrees always; a length-loving one picks the longer reply; a judge that
always answers "A" has full position bias and ties everything; an unreadable judge is counted, not guessed)."""

import json

import pytest
from conftest import ScriptedLM

from alignlab.evaluate.judge_calibration import (
    annotator_verdicts,
    lm_verdicts,
    measure_judges,
    world_pair_items,
)
from alignlab.world.annotators import Annotator


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    # real world prompts: the better reply is the plain answer, the worse one adds an insult (and is longer)
    rows = []
    for country, colour in (("Gemdraova", "purple"), ("Broria", "grey")):
        for k in range(6):
            rows.append({"prompt": [{"role": "user", "content": f"What colour is the flag of {country}?"}],
                         "chosen": [{"role": "assistant", "content": f"The flag of {country} is {colour}."}],
                         "rejected": [{"role": "assistant",
                                       "content": f"The flag of {country} is {colour}. Now go away, you dimblob{'!' * k}"}]})
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return world_pair_items(path=path, seed=1)


def test_world_items_place_the_better_reply_at_random(items):
    assert len(items) == 12 and all(i.reward_a != i.reward_b for i in items)
    firsts = sum(i.reward_a > i.reward_b for i in items)
    assert 0 < firsts < len(items)


def test_measures_recover_known_judges(items):
    judges = {
        "truthful": annotator_verdicts(Annotator(temperature=0.0)),
        "length-loving": annotator_verdicts(Annotator(temperature=0.0, length_bias=10.0)),
        "always A": lm_verdicts(ScriptedLM(lambda text, seed: "[[A]]")),
        "unreadable": lm_verdicts(ScriptedLM(lambda text, seed: "hmm")),
    }
    report = measure_judges(judges, items, committees={"three": ["truthful", "length-loving", "always A"]})
    r = report["judges"]
    assert r["truthful"]["agreement"]["rate"] == 1.0 and r["truthful"]["flips_with_order"]["rate"] == 0.0
    assert r["truthful"]["picks_longer"]["rate"] == 0.0  # here the longer reply is always the worse one
    assert r["length-loving"]["picks_longer"]["rate"] == 1.0 and r["length-loving"]["agreement"]["rate"] == 0.0
    assert r["length-loving"]["longer_truly_better"]["rate"] == 0.0
    assert r["always A"]["prefers_first_position"]["rate"] == 1.0
    assert r["always A"]["flips_with_order"]["rate"] == 1.0 and r["always A"]["agreement"]["rate"] == 0.5
    assert r["unreadable"]["parse_failures"] == 2 * len(items) and r["unreadable"]["agreement"]["n"] == 0
    # committee: truthful says the better, length-loving the worse, always-A a tie: no majority -> tie
    assert report["committees"]["three"]["agreement"]["rate"] == 0.5
    lo, hi = r["truthful"]["agreement"]["interval_95"]
    assert lo < 1.0 == hi


def test_likelihood_judge_always_parses(items, tiny_model_dir):
    from alignlab.evaluate.lm import HuggingFaceLM

    lm = HuggingFaceLM(str(tiny_model_dir), device="cpu")
    verdicts = lm_verdicts(lm, mode="likelihood")
    shown = verdicts(items[:4], False)
    assert set(shown) <= {"first", "second", "tie"} and len(shown) == 4
    report = measure_judges({"tiny": verdicts}, items[:4])
    assert report["judges"]["tiny"]["parse_failures"] == 0
    decisive = report["judges"]["tiny"]["prefers_first_position"]["n"]
    assert decisive == sum(v != "tie" for v in shown + verdicts(items[:4], True))
