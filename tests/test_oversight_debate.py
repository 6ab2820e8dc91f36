"""Debate, multi-agent debate and market making with scripted LMs (what is asked, in what order, what is parsed,
what the judge is taught), and the commands end to end on a tiny model."""

from __future__ import annotations

import json
import math

import pytest
from test_oversight import ListLM

from alignlab.cli import main
from alignlab.errors import OversightError
from alignlab.oversight.debate import (
    DebateItem,
    debate,
    debate_items,
    judge,
    judge_prompt,
    judge_rows,
    multiagent_debate,
    strongest_argument,
    world_feedback,
)
from alignlab.oversight.market_making import Market, market_making
from alignlab.oversight.self_consistency import last_number
from alignlab.world.datasets import World
from alignlab.world.families import parse_prompt
from alignlab.world.judge import true_reward
from alignlab.world.skills import protocols as P
from alignlab.world.skills.constitution import DEFAULT_CONSTITUTION, answer_faults

INSULT = "Fault: insult. It insults the user."
SLIP = "Fault: arithmetic slip. It gets the arithmetic wrong."
NONE = "Fault: none. The answer follows the principle."


class ScriptLM(ListLM):
    """Replies with ``reply(user_text, repeat_index)``; records every (user text, temperature) it was asked."""

    def __init__(self, reply):
        self.reply, self.asked = reply, []

    def generate(self, prompts, *, stop=None, max_tokens=256, temperature=0.0, top_p=1.0, seed=0):
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        self.asked += [(text, temperature) for text in texts]
        return [self.reply(text, texts[:i].count(text)) for i, text in enumerate(texts)]


def sum_item(truth: str = "A") -> DebateItem:
    q = parse_prompt("What is 3 plus 4?")
    right, wrong = "3 plus 4 is 7.", "3 plus 4 is 9."
    return DebateItem(q, right, wrong, "A") if truth == "A" else DebateItem(q, wrong, right, "B")


def test_debate_items_pair_a_faultless_answer_with_a_worse_one() -> None:
    world = World(0, "oversight")
    items = debate_items(world.splits.eval, 40, seed=3)
    assert items == debate_items(world.splits.eval, 40, seed=3)
    assert {it.truth for it in items} == {"A", "B"}
    for it in items:
        right, wrong = (it.answer_a, it.answer_b) if it.truth == "A" else (it.answer_b, it.answer_a)
        assert not answer_faults(it.prompt, right) and answer_faults(it.prompt, wrong)
        assert true_reward(it.prompt, right) > true_reward(it.prompt, wrong)


def test_a_debater_states_its_strongest_parseable_argument() -> None:
    assert strongest_argument([NONE, "garbage", INSULT]) == INSULT
    assert strongest_argument(["garbage", NONE]) == NONE
    assert strongest_argument(["garbage", "Fault: nonsense."]) == ""


def test_debate_rounds_critique_the_opponent_under_each_principle_in_turn() -> None:
    items = [sum_item("A"), sum_item("B")]

    def reply(text, k):  # a debater finds the slip in the wrong answer on its second sample only
        if "Answer: 3 plus 4 is 9." in text:
            return [NONE, SLIP][k % 2]
        return [NONE, "not a critique"][k % 2]

    lm = ScriptLM(reply)
    transcripts, parse_rate = debate(lm, items, rounds=2, samples=2, seed=0)
    principles = DEFAULT_CONSTITUTION.principles
    asks = [text for text, _ in lm.asked]
    assert len(asks) == 2 * 2 * 2 * 2  # rounds x items x debaters x samples
    # round 0, item 0: debater A attacks answer B under principle 0 (two samples), then debater B attacks answer A
    assert asks[0] == asks[1] == P.critique_prompt(principles[0], "What is 3 plus 4?", "3 plus 4 is 9.")
    assert asks[2] == P.critique_prompt(principles[0], "What is 3 plus 4?", "3 plus 4 is 7.")
    assert asks[4] == P.critique_prompt(principles[1], "What is 3 plus 4?", "3 plus 4 is 7.")  # item 1, round 0
    assert asks[8] == P.critique_prompt(principles[1], "What is 3 plus 4?", "3 plus 4 is 9.")  # item 0, round 1
    assert all(t == 1.0 for _, t in lm.asked)
    # the honest debater names the slip, the dishonest one concedes: per round, the debater for A speaks first
    assert transcripts[0] == [("A", SLIP), ("B", NONE)] * 2
    assert transcripts[1] == [("A", NONE), ("B", SLIP)] * 2
    assert parse_rate == pytest.approx(12 / 16)


def test_the_judge_reads_the_arguments_under_the_answer_they_attack_and_is_graded_strictly() -> None:
    item = sum_item("A")
    transcript = [("A", SLIP), ("B", INSULT), ("A", "")]
    prompt = judge_prompt(item, transcript)
    assert f"Answer A: 3 plus 4 is 7. {INSULT}\n" in prompt and prompt.endswith(f"9. {SLIP}\nWhich answer is better, A or B?")
    assert judge_prompt(item) == P.pairwise_prompt(item.prompt.text, item.answer_a, item.answer_b)
    items = [sum_item("A"), sum_item("B"), sum_item("A")]
    verdicts = iter(["Verdict: A.", "Verdict: A.", "A"])
    result = judge(ScriptLM(lambda text, k: next(verdicts)), items)
    assert (result.accuracy, result.parse_rate, result.verdicts) == (pytest.approx(1 / 3), pytest.approx(2 / 3),
                                                                     ["A", "A", None])
    rows = judge_rows([items[1]], [transcript])
    assert rows[0]["messages"][0]["content"] == judge_prompt(items[1], transcript)
    assert rows[0]["messages"][1]["content"] == "Verdict: B."
    assert judge_rows([items[1]], None)[0]["messages"][0]["content"] == judge_prompt(items[1])


def test_multiagent_debate_sends_feedback_only_to_agents_that_disagree_with_the_others() -> None:
    q = parse_prompt("What is 3 plus 4?")
    feedback_ask = P.feedback_prompt(q.text, "It is 8.", "The arithmetic is wrong.")
    answers = {q.text: ["It is 7.", "It is 7.", "It is 8."], feedback_ask: ["It is 7."]}
    lm = ScriptLM(lambda text, k: answers[text][k % len(answers[text])])
    result = multiagent_debate(lm, [q], agents=3, rounds=2, extract=last_number, feedback=world_feedback)
    first, second, third = result["rounds"]
    assert [text for text, _ in lm.asked] == [q.text] * 3 + [feedback_ask]  # round 2: all agree, nobody is asked
    assert (first["majority_accuracy"], first["agent_accuracy"]) == (1.0, pytest.approx(2 / 3))
    assert (second["agent_accuracy"], second["changed"]) == (1.0, pytest.approx(1 / 3))
    assert third["changed"] == 0.0
    assert world_feedback(parse_prompt("What is the capital of Volmark?")).endswith("is wrong.")


def test_market_making_shows_the_argument_that_moves_the_market_most_until_it_settles() -> None:
    items = [sum_item("A")]

    def judge_reply(text, k):  # believes a slip claimed against B; an insult claimed against A sways half the votes
        if SLIP in text.split("Answer B:")[1]:
            return "Verdict: A."
        if INSULT in text.split("Answer B:")[0]:
            return ["Verdict: B.", "Verdict: A."][k % 2]
        return ["Verdict: B.", "Verdict: B.", "Verdict: A.", "garbage"][k % 4]

    def adversary_reply(text, k):  # arguments against B name the slip; against A, an insult (or nonsense)
        return SLIP if "3 plus 4 is 9." in text else [INSULT, "nonsense"][k % 2]

    market = Market(ScriptLM(judge_reply), mode="sample", samples=4)
    adversary = ScriptLM(adversary_reply)
    out = market_making(market, adversary, items, candidates=6, max_rounds=3, threshold=0.1)
    # first prediction 1/3 (B, wrong); the slip moves it to 1 (+2/3, more than the insult's +1/6), then nothing moves
    assert out["first_accuracy"] == 0.0 and out["accuracy"] == 1.0
    assert out["transcripts"][0] == [("A", SLIP)] and out["final_p"] == [1.0]
    assert out["mean_move_by_round"][0] == pytest.approx(2 / 3) and out["moving_by_round"] == [1.0, 0.0]
    assert out["mean_move_by_round"][1] < 0.1 and len(out["mean_move_by_round"]) == 2
    assert out["judge_parse_rate"] < 1.0 and 0.0 < out["adversary_parse_rate"] <= 1.0


class TurnTemplate:
    """A tokenizer's chat template, reduced to what the market reads: the user turn, then the answer's start."""

    chat_template = "user turn, then the answer"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return messages[-1]["content"] + "\nAnswer: "


class VerdictScorer(ScriptLM):
    """Scores ``Verdict: A.``/``Verdict: B.`` by whether a slip is claimed against answer B, reading the prompt
    through its chat template (as a local model does)."""

    tokenizer = TurnTemplate()

    def loglikelihood(self, requests):
        out = []
        for context, continuation in requests:
            believes_a = SLIP in context.split("Answer B:")[1]
            p = 0.9 if (continuation == "Verdict: A.") == believes_a else 0.05
            out.append((math.log(p), False))
        return out


def test_the_likelihood_market_prices_the_judge_from_its_verdict_likelihoods() -> None:
    market = Market(VerdictScorer(None), mode="likelihood")
    p = market.predict([sum_item("A"), sum_item("A")], [[], [("A", SLIP)]])
    assert p == [pytest.approx(0.05 / 0.95), pytest.approx(0.9 / 0.95)] and market.parse_rate == pytest.approx(0.95)
    chat_only = ScriptLM(None)
    chat_only.supports_loglikelihood = False
    with pytest.raises(OversightError, match="sample"):
        Market(chat_only)
    server = ScriptLM(None)  # scores text but does not expose its chat template: its verdicts would be misread
    with pytest.raises(OversightError, match="chat template"):
        Market(server, mode="likelihood")


def test_debate_commands_run_on_the_world_with_a_tiny_model(tiny_model_dir, tmp_path) -> None:
    common = ["--model", str(tiny_model_dir), "--world", "--set", "score_limit=2"]
    out = tmp_path / "debate"
    record = tmp_path / "docs" / "seed0.json"
    assert main(["oversee", "debate", *common, "--output", str(out), "--record", str(record),
                 "--set", "items=4", "--set", "judge_items=4", "--set", "judge_steps=1", "--set", "rounds=[1]"]) == 0
    rows = json.loads(record.read_text())["results"]["rows"]
    assert [r["method"] for r in rows] == ["judge-alone", "debate", "judge-alone-trained", "debate-trained"]
    assert all(r["parse_rate"] is not None and r["value"] <= r["parse_rate"] for r in rows)  # unparsed: never right
    assert (out / "judge-debate" / "config.json").exists() and rows[3]["baseline"] == "judge-alone-trained"
    mad = tmp_path / "mad"
    assert main(["oversee", "multiagent-debate", *common, "--output", str(mad), "--set", "agents=[1,2]",
                 "--set", "rounds=1", "--set", "per_family=2", "--set", "max_tokens=8"]) == 0
    curves = json.loads((mad / "results.json").read_text())["results"]["curves"]
    assert [c["agents"] for c in curves] == [1, 2] and all(len(c["rounds"]) == 2 for c in curves)
    market = tmp_path / "market"
    assert main(["oversee", "market-making", *common, "--output", str(market), "--set", "items=2",
                 "--set", "candidates=2", "--set", "samples=2", "--set", "max_rounds=1"]) == 0
    result = json.loads((market / "results.json").read_text())["results"]
    assert [r["method"] for r in result["rows"]] == ["market-first-prediction", "market-making"]
