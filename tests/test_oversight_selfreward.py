"""Self-rewarding, R-Tuning and process supervision: the protocols pinned with scripted LMs (what is asked, in what
order, what is parsed, what is trained on), resume after a failure mid-iteration, and R-Tuning end to end on a
tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from alignlab.cli import main
from alignlab.evaluate.interface import LM
from alignlab.oversight import process_supervision as S
from alignlab.oversight import r_tuning as R
from alignlab.oversight.self_rewarding import (
    SelfRewardSettings,
    judge_candidates,
    judge_stats,
    preference_pairs,
    run_self_rewarding,
)
from alignlab.world.families import parse_prompt
from alignlab.world.skills import protocols as P
from alignlab.world.skills.multistep import MultistepProblem

Q = parse_prompt("What is 3 plus 4?")
RIGHT, WRONG = "3 plus 4 is 7.", "3 plus 4 is 8."  # true ratings 5 and 4


class ScriptedLM(LM):
    """Answers a prompt with its script's next output (cycling per prompt text); records every call."""

    def __init__(self, script: dict[str, list[str]], fail_on: str | None = None):
        self.script, self.fail_on, self.calls = script, fail_on, []

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, *, stop=None, max_tokens=256, temperature=0.0, top_p=1.0, seed=0):
        texts = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]
        self.calls.append(texts)
        if self.fail_on is not None and self.fail_on in texts:
            raise ConnectionError("server went away")
        seen: dict[str, int] = {}
        out = []
        for t in texts:
            out.append(self.script[t][seen.get(t, 0) % len(self.script[t])])
            seen[t] = seen.get(t, 0) + 1
        return out


def judge_script() -> dict[str, list[str]]:
    """Candidates alternate right/wrong; the judge rates the right one 5, 5, unparseable and the wrong one 2, 3, 2."""
    return {Q.text: [RIGHT, WRONG],
            P.rating_prompt(Q.text, RIGHT): ["Rating: 5.", "Rating: 5.", "five stars"],
            P.rating_prompt(Q.text, WRONG): ["Rating: 2.", "Rating: 3.", "Rating: 2."]}


def test_self_judging_asks_n_candidates_then_j_ratings_each_and_pairs_best_with_worst() -> None:
    lm = ScriptedLM(judge_script())
    judged = judge_candidates(lm, [Q], n_candidates=2, judge_samples=3, max_tokens=16, temperature=1.0, seed=0)
    assert lm.calls[0] == [Q.text, Q.text]  # N candidates first
    assert lm.calls[1] == [P.rating_prompt(Q.text, RIGHT)] * 3 + [P.rating_prompt(Q.text, WRONG)] * 3
    assert judged.judged == [[5.0, pytest.approx(7 / 3)]]  # the unparseable rating casts no score
    assert judged.true_ratings == [[5, 4]]
    assert preference_pairs(judged) == [{"prompt": Q.messages, "chosen": [{"role": "assistant", "content": RIGHT}],
                                         "rejected": [{"role": "assistant", "content": WRONG}]}]
    stats = judge_stats(judged)
    assert stats["parse_rate"] == pytest.approx(5 / 6)
    assert stats["rating_accuracy"] == pytest.approx(2 / 5)  # 5, 5 right; 2, 3, 2 against a true 4 wrong
    assert stats["judge_gap"] == pytest.approx(((5 - 5) + (7 / 3 - 4)) / 2)
    assert stats["pair_agreement"] == 1.0 and stats["pairs"] == 1


def test_a_judge_that_never_parses_gives_no_pairs_and_a_zero_parse_rate() -> None:
    script = judge_script() | {P.rating_prompt(Q.text, a): ["I like it."] for a in (RIGHT, WRONG)}
    judged = judge_candidates(ScriptedLM(script), [Q], n_candidates=2, judge_samples=2, max_tokens=16,
                              temperature=1.0, seed=0)
    assert preference_pairs(judged) == []
    assert judge_stats(judged)["parse_rate"] == 0.0 and judge_stats(judged)["rating_accuracy"] is None


def test_an_iteration_whose_judge_never_parses_stops_with_the_parse_rate(tmp_path) -> None:
    from alignlab.errors import OversightError

    script = judge_script() | {P.rating_prompt(Q.text, a): ["I like it."] for a in (RIGHT, WRONG)}
    with pytest.raises(OversightError, match="iteration 1: the judge separated no candidates .parse rate 0.0"):
        run_self_rewarding("base", [[Q]], [Q], tmp_path, SelfRewardSettings(iterations=1, n_candidates=2),
                           load=lambda p: ScriptedLM(script), train=_fake_train([]),
                           truth=lambda lm: {"true_reward": 0.0}, progress=lambda s: None)
    assert (tmp_path / "iter0" / "iteration.json").exists()  # M0's measurement is kept for the re-run


def _fake_train(log: list):
    def train(kind, rows, init, output, **kwargs):
        log.append((kind, str(init), str(output), rows))
        Path(output).mkdir(parents=True)
        return Path(output)
    return train


def test_self_rewarding_resumes_from_the_last_finished_iteration(tmp_path) -> None:
    settings = SelfRewardSettings(iterations=3, n_candidates=2, judge_samples=3)
    prompts = [[Q], [Q], [Q]]
    good = ScriptedLM(judge_script())
    loads: list[str] = []

    def flaky_load(path):
        loads.append(Path(path).parent.name)
        # M1 is loaded to be measured (iteration 1), then to write iteration 2's data: its server fails then
        return ScriptedLM(judge_script(), fail_on=Q.text) if loads.count("iter1") == 2 else good

    log: list = []
    truth = lambda lm: {"true_reward": 1.0}  # noqa: E731
    with pytest.raises(ConnectionError):
        run_self_rewarding("base", prompts, [Q], tmp_path, settings, load=flaky_load, train=_fake_train(log),
                           truth=truth, progress=lambda s: None)
    assert [(kind, Path(init).parent.name) for kind, init, _, _ in log] == [("dpo", "")]  # M1 = DPO(base)
    assert (tmp_path / "iter0" / "iteration.json").exists() and (tmp_path / "iter1" / "iteration.json").exists()
    assert not (tmp_path / "iter2").exists()
    log.clear()
    entries = run_self_rewarding("base", prompts, [Q], tmp_path, settings, load=lambda p: good,
                                 train=_fake_train(log), truth=truth, progress=lambda s: None)
    # iterations 0 and 1 are read back; training restarts from M1 for M2, then M2 for M3
    assert [Path(init).parent.name for _, init, _, _ in log] == ["iter1", "iter2"]
    assert [e["iteration"] for e in entries] == [0, 1, 2, 3]
    assert entries[2]["data"]["pairs"] == 1 and log[0][3][0]["chosen"][0]["content"] == RIGHT
    assert json.loads((tmp_path / "iter3" / "iteration.json").read_text())["model"] == str(tmp_path / "iter3" / "model")


# ---- R-Tuning ----------------------------------------------------------------------------------------


def test_r_tuning_refuses_exactly_where_the_models_own_answer_was_wrong() -> None:
    facts = parse_prompt("Name the capital of Loyouistan.")
    wrong_sum = parse_prompt("What is 5 plus 5?")
    lm = ScriptedLM({Q.text: [RIGHT], facts.text: [f"The capital of Loyouistan is {facts.answer}."],
                     wrong_sum.text: ["5 plus 5 is 11."]})
    known, answers = R.split_by_knowledge(lm, [Q, facts, wrong_sum])
    assert known == [True, True, False] and answers[2] == "5 plus 5 is 11."
    rows = R.r_tuning_rows([Q, facts, wrong_sum], known)
    assert [r["messages"][-1]["content"] for r in rows][2] == R.UNSURE
    assert rows[0]["messages"][-1]["content"].endswith("7.") and facts.answer in rows[1]["messages"][-1]["content"]
    assert all(r["messages"][-1]["content"] != R.UNSURE for r in R.plain_rows([Q, facts, wrong_sum]))
    assert R.knows(facts, R.uncertain_answer(facts)) is False  # a refusal is not an answer on a known fact


def test_honesty_metrics_count_refusals_and_accuracy_on_answered_questions() -> None:
    wrong_sum = parse_prompt("What is 5 plus 5?")
    lm = ScriptedLM({Q.text: [RIGHT, R.UNSURE], wrong_sum.text: ["5 plus 5 is 11.", "5 plus 5 is 10."]})
    m = R.honesty_metrics(lm, [Q, wrong_sum], samples=2)
    assert m["refusal_rate_answerable"] == pytest.approx(1 / 4)
    assert m["accuracy_answered"] == pytest.approx(2 / 3)
    assert m["helpfulness"] == pytest.approx(2 / 4)


def test_r_tuning_command_end_to_end_on_a_tiny_model(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "rt"
    main(["oversee", "r-tuning", "--world", "--model", str(tiny_model_dir), "--output", str(out), "--set",
          "questions=8", "--set", "sft_steps=2", "--set", "score_limit=7", "--set", "score_samples=1", "--set",
          "eval_samples=1"])
    result = json.loads((out / "results.json").read_text())["results"]
    assert [r["method"] for r in result["rows"]] == ["base", "sft", "r-tuning"]
    assert result["rows"][2]["baseline"] == "sft"
    # a random model knows nothing: every R-Tuning target is a refusal
    targets = [json.loads(line)["messages"][-1]["content"]
               for line in (out / "r-tuning-data.jsonl").read_text().splitlines()]
    assert result["known_fraction"] == 0.0 and len(targets) == 6  # 8 // 3 questions from each family
    assert all("not sure" in t or "don't know" in t for t in targets)
    assert "r-tuning: honesty" in capsys.readouterr().out


# ---- process supervision ------------------------------------------------------------------------


PROBLEM = MultistepProblem(2, (("+", 3), ("*", 2)))  # 2 + 3 = 5. 5 * 2 = 10.


def _ms_prompt():
    from alignlab.world.families import WorldPrompt

    return WorldPrompt("multistep", "What is (2 + 3) * 2? Show your steps.", "10", PROBLEM.to_meta(), 0, "oversight")


def test_step_labels_grade_each_step_and_the_closing_sentence() -> None:
    p = _ms_prompt()
    assert S.step_labels(p, "2 + 3 = 5. 5 * 2 = 10. The answer is 10.") == [True, True, True]
    assert S.step_labels(p, "2 + 3 = 6. 6 * 2 = 12. The answer is 12.") == [False, True, True]
    assert S.step_labels(p, "2 + 3 = 5. The answer is 5.") == [True, False]  # incomplete: the closing is invalid
    assert S.step_labels(p, "2 + 3 = 5. 5 * 2 = 10.") == [True, True]  # never closes: no closing step


def test_best_of_n_selection_by_prm_orm_and_vote() -> None:
    p = _ms_prompt()
    texts = ["2 + 3 = 5. 5 * 2 = 11. The answer is 11.", "2 + 3 = 5. 5 * 2 = 10. The answer is 10.",
             "2 + 3 = 5. 5 * 2 = 11. The answer is 11.", "2 + 3 = 5. 5 * 2 = 10. The answer is 10."]
    sols = S.Solutions([p], [texts], [[{}] * 4], [[False, True, False, True]], [[11, 10, 11, 10]])
    prm = [[0.1, 0.9, 0.2, 0.8]]  # prefers the right ones
    orm = [[0.9, 0.1, 0.8, 0.2]]  # prefers the wrong ones
    acc = S.selection_accuracy(sols, {"prm": prm, "orm": orm}, [1, 2, 4])
    assert acc["prm"] == {1: [0.5], 2: [1.0], 4: [1.0]}
    # two distinct texts per block of 2 or 4, one right: an uninformed pick among them is right half the time
    assert acc["distinct"] == {1: [0.5], 2: [0.5], 4: [0.5]}
    assert acc["orm"] == {1: [0.5], 2: [0.0], 4: [0.0]}
    assert acc["vote"] == {1: [0.5], 2: [0.0], 4: [0.0]}  # a 2-2 tie goes to the first answer seen (11)
    assert acc["pass"] == {1: [0.5], 2: [1.0], 4: [1.0]}
    assert S.ranking_auc(prm, sols.correct) == 1.0 and S.ranking_auc(orm, sols.correct) == 0.0
    assert S.prm_score(torch.tensor([0.5, 0.8])) == pytest.approx(0.4)
    assert S.prm_score(torch.tensor([0.5, 0.8]), "min") == pytest.approx(0.5)


def test_verifier_objective_is_weighted_cross_entropy_at_the_labelled_positions() -> None:
    batch = S.collate_labelled([{"input_ids": [5, 6, 7], "positions": [1, 2], "labels": [True, False]},
                                {"input_ids": [5, 6], "positions": [1], "labels": [True]}])
    assert batch["label_mask"].tolist() == [[0, 1, 1], [0, 1, 0]]
    logits = torch.tensor([[[0.3], [1.0], [-0.5]], [[2.0], [0.2], [9.0]]])

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": logits})

    out = S.VerifierObjective(pos_weight=3.0)(Fixed(), batch)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(torch.tensor(1.0), torch.tensor(1.0)) + 3 * bce(torch.tensor(-0.5), torch.tensor(0.0)) + bce(
        torch.tensor(0.2), torch.tensor(1.0))
    assert float(out.loss_sum) == pytest.approx(float(expected), rel=1e-5)
    assert S.VerifierObjective().num_items(batch) == 3


def test_constant_loss_is_the_weighted_base_rate_level() -> None:
    # balanced weights (3 right, 1 wrong weighted 3): the best constant is 1/2, ln 2 per unit weight
    assert S.constant_loss([True, True, True, False], pos_weight=3.0) == pytest.approx(6 * math.log(2) / 4)
    assert S.constant_loss([True, False], pos_weight=1.0) == pytest.approx(math.log(2))


class _CharLM:
    """A fake local LM: one token per character, a one-token prompt; log-likelihood = minus the length."""

    class tokenizer:  # noqa: N801
        @staticmethod
        def encode(text: str, add_special_tokens: bool = False) -> list[int]:
            return [ord(c) for c in text]

    def __init__(self) -> None:
        self.requests: list[tuple[list[int], list[int]]] = []

    def encode_prompt(self, messages) -> list[int]:
        return [0]

    def loglikelihood_tokens(self, requests):
        self.requests += requests
        return [(-float(len(cont)), False) for _, cont in requests]


def test_base_model_verifier_scores_each_stated_result_given_what_precedes_it() -> None:
    p = _ms_prompt()
    texts = ["2 + 3 = 5. 5 * 2 = 10. The answer is 10.", "2 + 3 = 5. 5 * 2 = 10."]
    lm = _CharLM()
    tokens = [[{"input_ids": [0] + lm.tokenizer.encode(t)} for t in texts]]
    sols = S.Solutions([p], [texts], tokens, [[True, False]], [[10, None]])
    logprobs = S.step_result_logprobs(lm, sols)
    decode = "".join
    assert [(decode(map(chr, ctx[1:])), decode(map(chr, cont))) for ctx, cont in lm.requests[:2]] == [
        ("2 + 3 =", " 5"), ("2 + 3 = 5. 5 * 2 =", " 10")]
    assert logprobs[0][0].tolist() == [-2.0, -3.0]
    assert S.base_score(logprobs[0][0], True) == -5.0 and S.base_score(logprobs[0][1], False) == -math.inf
    short = S.Solutions([p], [[texts[0], "2 + 3 = 5. The answer is 5."]], tokens, [[True, False]], [[10, 5]])
    assert S.too_few_steps(short, {"first": [[1.0, 0.0]], "second": [[0.0, 1.0]]}) == {
        "all": 0.5, "first": 0.0, "second": 1.0}
