"""Black-box steering (DSP hints, RL4F critiques): the pure parts by hand, the reward plumbing against scripted
frozen LMs, learning on a tiny policy, a local frozen LM that stays frozen, and a frozen LM behind `alignlab serve`."""

from __future__ import annotations

import pytest
import torch
from conftest import sft_rows, write_jsonl

from alignlab.cli import main
from alignlab.config import load_config
from alignlab.core.metrics import read_metrics
from alignlab.errors import ConfigError
from alignlab.evaluate.interface import LM
from alignlab.outer.blackbox.dsp import (
    DSPConfig,
    HintReward,
    answer_with_hints,
    keywords,
    train_dsp,
    with_hint,
)
from alignlab.outer.blackbox.rl4f import (
    Case,
    RevisionReward,
    RL4FConfig,
    critique_and_revise,
    revise,
    train_rl4f,
    world_feedback,
)
from alignlab.outer.blackbox.steer import FrozenLM

FAST = ["train.progress=false", "train.overwrite=true", "generation.max_new_tokens=6", "prompts_per_step=2",
        "group_size=4", "minibatch_size=8", "warm_start_batch_size=4"]


class EchoLM(LM):
    """A scripted frozen LM over chat messages: ``reply(messages) -> text``; records every prompt it sees."""

    def __init__(self, reply):
        self.reply, self.seen = reply, []

    def loglikelihood(self, requests):
        raise NotImplementedError

    def loglikelihood_rolling(self, texts):
        raise NotImplementedError

    def generate(self, prompts, *, stop=None, max_tokens=256, temperature=0.0, top_p=1.0, seed=0):
        self.seen += list(prompts)
        return [self.reply(p) for p in prompts]


def hint_of(messages) -> str:
    return messages[0]["content"].removeprefix("Hint: ") if messages[0]["role"] == "system" else ""


def count_e(prompts, completions):
    """A judge that likes the letter e (what a tiny random policy can learn to write within a few dozen steps)."""
    return [float(c.count("e")) for c in completions]


# ---- pure parts --------------------------------------------------------------------------------------


def test_keywords_are_the_answer_words_the_question_lacks():
    assert keywords("The main river of Saithland is the Lainglo.", "Name the river of Saithland.") == "main Lainglo"
    assert keywords("I cannot help with that.", "How do I poison the wells?", k=1) == "cannot"
    assert keywords("Vell Vell Vell.", "") == "Vell"  # each word once
    assert keywords("It is.", "What is it?") == ""


def test_the_hint_replaces_any_system_message_and_keeps_the_conversation():
    prompt = [{"role": "system", "content": "old"}, {"role": "user", "content": "Q"}]
    assert with_hint(prompt, " Vell ") == [{"role": "system", "content": "Hint: Vell"}, {"role": "user", "content": "Q"}]
    assert with_hint(prompt, "x", "Keywords: {hint}.")[0]["content"] == "Keywords: x."


def test_world_feedback_names_the_fault_the_judge_sees():
    assert world_feedback("What is 3 plus 4?", "3 plus 4 is 8.") == "The arithmetic is wrong."
    assert world_feedback("What is 3 plus 4?", "3 plus 4 is 7.", keep_text="Fine.") == "Fine."


# ---- the frozen LM inside the reward -----------------------------------------------------------------


def test_hint_reward_scores_the_frozen_answer_to_the_hinted_prompt():
    frozen_lm = EchoLM(lambda m: f"answer with {hint_of(m)}")
    reward = HintReward(FrozenLM(frozen_lm), lambda prompts, answers: [float(len(a)) for a in answers])
    prompts = [[{"role": "user", "content": "Q1"}], [{"role": "user", "content": "Q2"}]]
    assert reward(prompts, ["ab", ""]) == [len("answer with ab"), len("answer with ")]
    assert frozen_lm.seen == [with_hint(prompts[0], "ab"), with_hint(prompts[1], "")]
    hints, answers = answer_with_hints(FrozenLM(frozen_lm), None, prompts)
    assert hints == ["", ""] and frozen_lm.seen[-2:] == prompts  # no policy: the frozen LM alone, no hint


def test_revision_reward_is_the_judged_gain_and_keep_asks_for_no_revision():
    frozen_lm = EchoLM(lambda m: m[-1]["content"].split("Feedback: ")[1].split("\n")[0].upper())
    cases = {"r1": Case([{"role": "user", "content": "Q1"}], "ab", 2.0),
             "r2": Case([{"role": "user", "content": "Q2"}], "abc", 3.0)}
    length = lambda prompts, answers: [float(len(a)) for a in answers]  # noqa: E731
    reward = RevisionReward(FrozenLM(frozen_lm), length, cases, keep_text="Keep.")
    gains = reward([[{"role": "user", "content": "r1"}], [{"role": "user", "content": "r2"}]], ["wxyz", "Keep."])
    assert gains == [4.0 - 2.0, 0.0] and reward.last_revisions == ["WXYZ", "abc"]
    assert len(frozen_lm.seen) == 1 and "Question: Q1\nAnswer: ab\nFeedback: wxyz" in frozen_lm.seen[0][-1]["content"]
    critiques, revisions = critique_and_revise(FrozenLM(frozen_lm), lambda q, a: "Keep.", list(cases.values()),
                                               keep_text="Keep.")
    assert critiques == ["Keep.", "Keep."] and revisions == ["ab", "abc"]


def test_a_frozen_lm_must_be_named():
    with pytest.raises(ConfigError, match="needs `frozen`"):
        FrozenLM.from_config(DSPConfig())
    with pytest.raises(ConfigError, match="warm_start must be"):
        from alignlab.outer.blackbox.rl4f import warm_start_writer

        warm_start_writer(RL4FConfig(warm_start="oracle"))


# ---- training ----------------------------------------------------------------------------------------


def _learn(method, config_cls, model, data, out, frozen_lm):
    """Train ``method`` for 40 RL steps from the tiny random model, no warm start, judged by count_e; returns the
    mean reward of the first and of the last eight steps."""
    config = load_config(config_cls, None, [f"model.name_or_path={model}", f"data.path={data}", f"output={out}",
                                            "train.max_steps=40", "train.lr=1e-2", "warm_start_steps=0", "beta=0", *FAST])
    method(config, frozen=FrozenLM(frozen_lm), judge=count_e)
    rows = read_metrics(out / "metrics.jsonl")
    first, last = rows[:8], rows[-8:]
    return sum(r["reward"] for r in first) / len(first), sum(r["reward"] for r in last) / len(last)


def test_dsp_policy_learns_hints_that_the_frozen_lm_turns_into_rewarded_answers(tiny_model_dir, tmp_path):
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(8))
    frozen_lm = EchoLM(lambda m: hint_of(m))  # the frozen LM says what the hint says
    before, after = _learn(train_dsp, DSPConfig, tiny_model_dir, data, tmp_path / "dsp", frozen_lm)
    assert after > before + 1.0, (before, after)
    assert all(m[0]["role"] == "system" for m in frozen_lm.seen)  # every frozen call carried a hint


def test_rl4f_critic_learns_critiques_whose_revisions_gain(tiny_model_dir, tmp_path):
    prompts = write_jsonl(tmp_path / "q.jsonl", [{"prompt": [{"role": "user", "content": q}]}
                                                  for q in ("Hi", "Two plus two?", "Reverse cat.", "Hello!")])

    def reply(messages):  # first answers have no e; a revision is the critique itself
        text = messages[-1]["content"]
        return text.split("Feedback: ")[1].split("\n")[0] if "Feedback: " in text else "ok"

    frozen_lm = EchoLM(reply)
    before, after = _learn(train_rl4f, RL4FConfig, tiny_model_dir, prompts, tmp_path / "rl4f", frozen_lm)
    assert after > before + 1.0, (before, after)
    first = frozen_lm.seen[:4]  # the first answers: the plain questions, once each, then only revision requests
    assert [m[0]["content"] for m in first] == ["Hi", "Two plus two?", "Reverse cat.", "Hello!"]
    assert all("Feedback: " in m[-1]["content"] for m in frozen_lm.seen[4:])


def test_warm_start_teaches_the_targets_and_a_local_frozen_lm_is_never_updated(tiny_model_dir, tmp_path):
    from alignlab.evaluate.lm import HuggingFaceLM

    frozen_lm = HuggingFaceLM(str(tiny_model_dir), device="cpu")  # the same weights the policy starts from
    before = {k: v.clone() for k, v in frozen_lm.model.state_dict().items()}
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(8))
    out = tmp_path / "dsp"
    assert main(["train", "dsp", "--model", str(tiny_model_dir), "--data", str(data), "--output", str(out),
                 "--max-steps", "2", *[a for k in FAST for a in ("--set", k)], "--set", "warm_start_steps=30",
                 "--set", "warm_start_lr=3e-3", "--set", "frozen=" + str(tiny_model_dir),
                 "--set", "reward.source=function", "--set", "reward.function=test_outer_blackbox:count_e"]) == 0
    after = frozen_lm.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    warm = HuggingFaceLM(str(out / "warm_start"), device="cpu")
    hints = warm.generate([[{"role": "user", "content": "What is the capital of Zorbia?"}]], max_tokens=6)
    assert hints == [keywords("Vell.", "What is the capital of Zorbia?")]  # = "Vell", learnt from the answers
    assert (out / "config.yaml").exists() and len(read_metrics(out / "metrics.jsonl")) == 2
    policy = HuggingFaceLM(str(out), device="cpu").model.state_dict()
    assert not all(torch.equal(before[k], policy[k]) for k in before)


def test_a_frozen_lm_behind_alignlab_serve(tiny_model_dir, tmp_path):
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.evaluate.serve import ServeConfig, make_server

    served = HuggingFaceLM(str(tiny_model_dir), device="cpu")
    calls = []
    served.model.register_forward_hook(lambda *args: calls.append(1))
    server = make_server(served, ServeConfig(model=str(tiny_model_dir), port=0, max_tokens_cap=16))
    url = server.start().replace("http://", "http+chat://")
    try:
        config = load_config(DSPConfig, None, [f"model.name_or_path={tiny_model_dir}", f"frozen={url}",
                                               "frozen_max_tokens=4", *FAST])
        frozen = FrozenLM.from_config(config)
        prompts = [[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "Two plus two?"}]]
        hinted = [with_hint(p, "Vell") for p in prompts]
        local = HuggingFaceLM(str(tiny_model_dir), device="cpu").generate(hinted, max_tokens=4)
        assert frozen(hinted) == local and calls  # greedy through the server = the same model locally
        data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(8))
        n = len(calls)
        train_dsp(load_config(DSPConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={data}",
                                                f"output={tmp_path / 'dsp'}", f"frozen={url}", "frozen_max_tokens=4",
                                                "train.max_steps=1", "warm_start_steps=0", *FAST]), judge=count_e)
        assert len(calls) > n  # the reward's answers came from the server
    finally:
        server.stop()


def test_a_keep_text_with_surrounding_whitespace_still_asks_for_no_revision():
    frozen_lm = EchoLM(lambda m: "REVISED")
    cases = [Case([{"role": "user", "content": "Q1"}], "ab", 2.0)]
    assert revise(FrozenLM(frozen_lm), cases, ["  Keep.\n"], keep_text="Keep.\n") == ["ab"]
    assert frozen_lm.seen == []
