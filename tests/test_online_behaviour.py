"""Each online method learns in the direction of its reward: on a tiny random model and a scripted reward (the
share of a completion's tokens drawn from a target third of the vocabulary), PPO, Safe PPO, GRPO, RLOO and
REINFORCE raise the reward within a few dozen steps, and the same run with the reward negated lowers the share.
A sign error in an advantage, a baseline, a clipped loss or Safe RLHF's cost term fails one of these. RAFT and RSO
likewise raise a scripted reward of the text, or lower it when negated (SPIN has no reward; it is not here).

Compared: the mean reward of the run's last steps against its first steps, with a margin far above the step-to-step
noise (CPU rounding moves a run's numbers slightly, never its direction)."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from alignlab.config import load_config
from alignlab.core.models import load_tokenizer
from alignlab.registry import get_method

WINDOW = 5  # steps averaged at each end of a run
MARGIN = 0.1  # of the share's [0, 1] range

CRITIC = ["minibatch_size=4", "train.lr=1e-2"]
GROUPS = ["group_size=4", "minibatch_size=16", "train.lr=3e-2"]
METHODS = {"ppo": CRITIC, "safe-ppo": [*CRITIC, "train.max_steps=60"],  # Safe RLHF learns from raw scores: slower
           "grpo": GROUPS, "rloo": GROUPS, "reinforce": GROUPS, "fdpg": GROUPS}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("prompts") / "prompts.jsonl",
                       [{"prompt": [{"role": "user", "content": q}]} for q in ["Hi", "Two plus two?", "Thanks!", "Hello!"]])


@pytest.fixture(scope="module")
def target_share(tiny_model_dir):
    """reward(prompts, completions): the share of each completion's tokens whose id is a multiple of 3."""
    tok = load_tokenizer(str(tiny_model_dir))

    def share(prompts, completions):
        ids = [tok(c, add_special_tokens=False)["input_ids"] for c in completions]
        return [sum(i % 3 == 0 for i in row) / max(len(row), 1) for row in ids]

    return share


def run(method, tiny_model_dir, prompts, out, extra=(), **sources):
    config_cls, train = get_method(method)
    cfg = load_config(config_cls, None, [
        f"model.name_or_path={tiny_model_dir}", f"data.path={prompts}", f"output={out}", "train.progress=false",
        "train.mixed_precision=no", "train.max_steps=40", "generation.max_new_tokens=8", "missing_eos_penalty=0",
        "prompts_per_step=4", "beta=0.005", *METHODS[method], *extra])
    return train(cfg, **sources).history


def change(history, key):
    values = [row[key] for row in history]
    return sum(values[-WINDOW:]) / WINDOW - sum(values[:WINDOW]) / WINDOW


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["reward", "negated"])
@pytest.mark.parametrize("method", list(METHODS))
def test_online_methods_move_the_share_the_way_the_reward_says(method, sign, tiny_model_dir, prompts, target_share,
                                                              tmp_path):
    sources = {"reward": lambda p, c: [sign * s for s in target_share(p, c)]}
    if method == "safe-ppo":
        sources["cost"] = lambda p, c: [-1.0] * len(c)  # always safe: λ shrinks and the reward decides
    history = run(method, tiny_model_dir, prompts, tmp_path, **sources)
    share = [sign * row["reward"] for row in history]  # the logged reward is sign × share
    first, last = sum(share[:WINDOW]) / WINDOW, sum(share[-WINDOW:]) / WINDOW
    if sign > 0:
        assert last - first > MARGIN, [round(s, 3) for s in share]
    else:  # the share starts near 0.1 and cannot fall below 0: it must lose at least half of what it had
        assert first > 0.05 and last < first / 2, [round(s, 3) for s in share]


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["cost", "negated"])
def test_safe_ppo_lowers_a_cost_above_its_threshold(sign, tiny_model_dir, prompts, target_share, tmp_path):
    history = run("safe-ppo", tiny_model_dir, prompts, tmp_path, ["cost_threshold=-1.0"],
                  reward=lambda p, c: [0.0] * len(c), cost=lambda p, c: [sign * s for s in target_share(p, c)])
    assert history[-1]["lambda"] > history[0]["lambda"]  # the cost stays above the threshold: λ grows
    assert change(history, "cost") < -MARGIN, [round(r["cost"], 3) for r in history]


SAMPLING = {
    "raft": ["iterations=6", "prompts_per_iteration=4", "samples_per_prompt=8", "selection=top_fraction",
             "fraction=0.25", "train.batch_size=4", "train.num_epochs=2"],
    "rso": ["num_candidates=32", "num_samples=32", "rso_beta=1.0", "beta=0.1", "train.batch_size=8",
            "train.num_epochs=6"],
}


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["reward", "negated"])
@pytest.mark.parametrize("method", list(SAMPLING))
def test_sampling_methods_move_the_reward_the_way_it_says(method, sign, tiny_model_dir, prompts, tmp_path):
    """RAFT (best samples → SFT, iterated) and RSO (rejection-sampled pairs → DPO) on a reward counting vowels in the
    answer's text (RAFT and RSO learn from the re-tokenised text, so the reward is one of the text; a count rather
    than a share, because the share of a short answer is all or nothing and RAFT would learn to answer short)."""
    import torch

    from alignlab.core.generation import GenerationConfig
    from alignlab.core.models import load_causal_lm
    from alignlab.outer.online.sampling import sample_and_score

    def reward(prompts_, completions):
        return [sign * sum(ch in "aeiou" for ch in text) / 10 for text in completions]

    tok, model = load_tokenizer(str(tiny_model_dir)), load_causal_lm(str(tiny_model_dir))
    questions = [[{"role": "user", "content": q}] for q in ["Hi", "Two plus two?", "Thanks!", "Hello!"]]

    def mean_reward() -> float:
        torch.manual_seed(0)  # the same draws before and after: only the model differs
        scores = sample_and_score(model, tok, questions, 32, GenerationConfig(max_new_tokens=8), reward).scores
        return sum(scores) / len(scores)

    before = mean_reward()
    config_cls, train = get_method(method)
    cfg = load_config(config_cls, None, [
        f"model.name_or_path={tiny_model_dir}", f"data.path={prompts}", f"output={tmp_path}", "train.progress=false",
        "train.mixed_precision=no", "train.lr=3e-2", "generation.max_new_tokens=8", *SAMPLING[method]])
    torch.manual_seed(1)
    train(cfg, model=model, tokenizer=tok, reward=reward)
    assert mean_reward() - before > 0.05, (before, mean_reward())  # half a vowel per answer
