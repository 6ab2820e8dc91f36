"""Every online method end to end for a couple of steps (CLI and Python), with tiny models; bad inputs."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import sft_rows, write_jsonl
from safetensors.torch import load_file

from alignlab.cli import main
from alignlab.config import load_config
from alignlab.core.generation import GenerationConfig, generate
from alignlab.core.metrics import read_metrics
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.errors import ConfigError, DataError, TrainingError
from alignlab.outer.online.grpo import GRPOConfig, train_grpo
from alignlab.outer.online.ppo import PPOConfig, train_ppo
from alignlab.outer.online.safe_ppo import SafePPOConfig, train_safe_ppo

QUESTIONS = ["Hi", "What is the capital of Zorbia?", "Reverse cat.", "Hello!", "Two plus two?", "Thanks!"]
FAST = ["train.progress=false", "generation.max_new_tokens=6", "prompts_per_step=4", "minibatch_size=4"]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    return write_jsonl(path, [{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS])


@pytest.fixture
def reward_module(tmp_path, monkeypatch) -> str:
    """A module with plain reward functions, importable as 'online_rewards:...'."""
    (tmp_path / "online_rewards.py").write_text(textwrap.dedent("""
        def length(prompts, completions):
            return [len(c) / 10 for c in completions]

        def has_vowel_cost(prompts, completions):
            return [1.0 if any(v in c for v in "aeiou") else -1.0 for c in completions]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "online_rewards"


def config(cls, model_dir, prompts, out, *extra):
    return load_config(cls, None, [f"model.name_or_path={model_dir}", f"data.path={prompts}", f"output={out}",
                                   "train.max_steps=2", *FAST, *extra])


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("method,extra", [
    ("ppo", []),
    ("safe-ppo", ["--set", "cost.source=function", "--set", "cost.function=online_rewards:has_vowel_cost"]),
    ("grpo", ["--set", "group_size=2", "--set", "prompts_per_step=2"]),
    ("rloo", ["--set", "group_size=2", "--set", "prompts_per_step=2"]),
    ("reinforce", ["--set", "group_size=2", "--set", "prompts_per_step=2"]),
    ("fdpg", ["--set", "group_size=2", "--set", "prompts_per_step=2", "--set", "divergence=forward_kl"]),
])
def test_online_methods_run_from_the_cli(method, extra, tiny_model_dir, prompts_file, reward_module, tmp_path):
    out = tmp_path / method
    sets = [x for s in FAST for x in ("--set", s)]
    code = main(["train", method, "--model", str(tiny_model_dir), "--data", str(prompts_file), "--output", str(out),
                 "--max-steps", "2", *sets, "--set", "reward.source=function",
                 "--set", f"reward.function={reward_module}:length", *extra])
    assert code == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    assert all(k in rows[0] for k in ("reward", "kl", "entropy", "clipfrac", "gen_seconds"))
    if method == "safe-ppo":
        assert {"lambda", "cost", "cost_value_error"} <= set(rows[0])
    if method in ("ppo", "safe-ppo"):
        assert "value_error" in rows[0]
    assert (out / "config.yaml").exists() and (out / "checkpoints" / "step-00000002").exists()
    assert weights(out).keys() == weights(tiny_model_dir).keys()  # the saved policy loads as a plain causal LM
    load_causal_lm(str(out))


def test_ppo_with_zero_learning_rate_leaves_the_policy_unchanged(tiny_model_dir, prompts_file, tmp_path):
    cfg = config(PPOConfig, tiny_model_dir, prompts_file, tmp_path / "zero", "train.lr=0.0", "ppo_epochs=2",
                 "minibatch_size=2")
    train_ppo(cfg, reward=lambda p, c: [float(len(x)) for x in c])
    before, after = weights(tiny_model_dir), weights(tmp_path / "zero")
    assert all(torch.equal(before[k], after[k]) for k in before)
    # and the same run with a learning rate does move it (so the check above can fail)
    cfg = config(PPOConfig, tiny_model_dir, prompts_file, tmp_path / "moved", "train.lr=0.01")
    train_ppo(cfg, reward=lambda p, c: [float(len(x)) for x in c])
    moved = weights(tmp_path / "moved")
    assert any(not torch.equal(before[k], moved[k]) for k in before)


def test_reward_and_cost_see_exactly_the_generated_completions(tiny_model_dir, prompts_file, tmp_path):
    seen = {"reward": [], "cost": []}

    def spy(name):
        def fn(prompts, completions):
            seen[name].append((list(prompts), list(completions)))
            return [0.5] * len(completions)
        return fn

    cfg = config(SafePPOConfig, tiny_model_dir, prompts_file, tmp_path / "spy", "train.lr=0.0",
                 "generation.temperature=0.0", "train.max_steps=1", "prompts_per_step=6", "minibatch_size=6")
    train_safe_ppo(cfg, reward=spy("reward"), cost=spy("cost"))
    assert seen["reward"] == seen["cost"] and len(seen["reward"]) == 1
    prompts, completions = seen["reward"][0]
    assert sorted(prompts) == sorted(QUESTIONS)  # every prompt once, as its user text
    # Greedy decoding of the unchanged (lr = 0) policy reproduces exactly what was scored.
    model, tok = load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    again = generate(model, tok, [[{"role": "user", "content": q}] for q in prompts],
                     GenerationConfig(max_new_tokens=6, temperature=0.0))
    assert again.texts == completions


def test_rollout_logprobs_equal_unpadded_logprobs(tiny_model_dir):
    from alignlab.core.logprobs import selective_log_softmax
    from alignlab.outer.online.rollout import ActorCritic, pad_rollout

    lm = load_causal_lm(str(tiny_model_dir)).eval()
    prompts, completions = [[5, 6, 7, 8, 9], [10, 11]], [[12, 13, 14], [15]]
    ids, attn, mask = pad_rollout(prompts, completions, 0)
    with torch.no_grad():
        logits, _ = ActorCritic(lm)(ids, attn, mask.shape[1])
        padded = selective_log_softmax(logits, ids[:, -mask.shape[1]:])
        for i, (p, c) in enumerate(zip(prompts, completions)):
            alone = lm(torch.tensor([p + c])).logits[0, len(p) - 1:-1]
            ref = selective_log_softmax(alone, torch.tensor(c))
            torch.testing.assert_close(padded[i, :len(c)], ref, atol=1e-5, rtol=1e-5)


def test_grpo_python_api_with_a_lora_reference(tiny_model_dir, prompts_file, tmp_path):
    cfg = config(GRPOConfig, tiny_model_dir, prompts_file, tmp_path / "lora", "model.lora_r=4", "group_size=2",
                 "prompts_per_step=2", "train.lr=0.01")
    result = train_grpo(cfg, reward=lambda p, c: [float(len(x)) for x in c])
    assert result.steps == 2 and result.history[-1]["kl"] >= 0


def test_resume_continues_exactly(tiny_model_dir, prompts_file, tmp_path):
    fn = lambda p, c: [float(len(x)) for x in c]  # noqa: E731
    keys = ["group_size=2", "prompts_per_step=2", "train.max_steps=3", "train.save_every=1", "train.lr=0.01"]
    full = train_grpo(config(GRPOConfig, tiny_model_dir, prompts_file, tmp_path / "full", *keys), reward=fn)
    out = tmp_path / "cut"
    train_grpo(config(GRPOConfig, tiny_model_dir, prompts_file, out, *keys[:2], "train.max_steps=2",
                      *keys[3:]), reward=fn)
    with pytest.raises(ConfigError, match="already holds a run"):
        train_grpo(config(GRPOConfig, tiny_model_dir, prompts_file, out, *keys), reward=fn)
    resumed = train_grpo(config(GRPOConfig, tiny_model_dir, prompts_file, out, *keys, "train.resume=true"), reward=fn)
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]
    # the sampling RNG, the prompt order and the minibatch shuffle continue where the first run stopped
    for key in ("reward", "loss", "kl", "grad_norm"):
        assert resumed.history[-1][key] == pytest.approx(full.history[-1][key], rel=1e-6), key
    a, b = weights(tmp_path / "full"), weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_online_configs_show_only_the_loop_keys_they_honour(tiny_model_dir, prompts_file, tmp_path, capsys):
    from alignlab.core.config import describe

    keys = {key for key, _, _ in describe(GRPOConfig)}
    assert {"train.lr", "train.max_steps", "train.progress", "minibatch_size"} <= keys
    assert not {"train.batch_size", "train.grad_accum", "train.group_by_length", "train.eval_every"} & keys
    help_rows = {key: default for key, default, _ in describe(PPOConfig)}
    assert help_rows["train.lr"] == "1e-05" and help_rows["train.max_steps"] == "100"  # the method's defaults
    # an old config file's offline keys still load, with a warning naming what to use instead
    with pytest.warns(FutureWarning, match="train.batch_size.*minibatch_size"):
        cfg = config(GRPOConfig, tiny_model_dir, prompts_file, tmp_path / "old", "train.batch_size=4")
    assert not hasattr(cfg.train, "batch_size")
    from alignlab.core.trainer import TrainConfig

    with pytest.warns(FutureWarning, match="batch_size"):
        GRPOConfig(train=TrainConfig(batch_size=4))
    with pytest.raises(ConfigError, match="unknown config key 'train.batch_sise'"):
        config(GRPOConfig, tiny_model_dir, prompts_file, tmp_path / "typo", "train.batch_sise=4")
    # the progress bar follows train.progress
    train_grpo(config(GRPOConfig, tiny_model_dir, prompts_file, tmp_path / "bar", "group_size=2", "prompts_per_step=2",
                      "train.progress=true"), reward=lambda p, c: [0.0] * len(c))
    assert "rollout steps" in capsys.readouterr().err
    train_grpo(config(GRPOConfig, tiny_model_dir, prompts_file, tmp_path / "quiet", "group_size=2",
                      "prompts_per_step=2"), reward=lambda p, c: [0.0] * len(c))
    assert "rollout steps" not in capsys.readouterr().err


def test_reward_config_is_renamed_reward_source_config_with_a_deprecation_warning():
    from alignlab.outer.online import rewards

    with pytest.warns(DeprecationWarning, match="RewardSourceConfig"):
        old = rewards.RewardConfig
    assert old is rewards.RewardSourceConfig
    with pytest.raises(AttributeError):
        rewards.NoSuchName  # noqa: B018


@pytest.mark.parametrize("bad", ["raise", "nan"])
def test_a_failing_reward_stops_with_a_clear_error_and_keeps_checkpoints(bad, tiny_model_dir, prompts_file,
                                                                         tmp_path):
    calls = []

    def reward(prompts, completions):
        calls.append(1)
        if len(calls) == 2:
            if bad == "raise":
                raise RuntimeError("scorer crashed")
            return [1.0, float("inf"), 1.0, 1.0]
        return [1.0] * len(completions)

    out = tmp_path / bad
    cfg = config(PPOConfig, tiny_model_dir, prompts_file, out, "train.save_every=1", "train.max_steps=3")
    with pytest.raises(TrainingError) as err:
        train_ppo(cfg, reward=reward)
    message = str(err.value)
    assert "step 2" in message and "step-00000001" in message
    assert ("RuntimeError: scorer crashed" in message) if bad == "raise" else ("prompt index" in message)
    assert (out / "checkpoints" / "step-00000001" / "model.safetensors").exists()


def test_empty_prompt_set_and_zero_generation_length(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises((DataError, ConfigError)):
        train_ppo(config(PPOConfig, tiny_model_dir, empty, tmp_path / "e"), reward=lambda p, c: [0.0] * len(c))
    code = main(["train", "grpo", "--model", str(tiny_model_dir), "--data", str(empty), "--output",
                 str(tmp_path / "z"), "--set", "generation.max_new_tokens=0"])
    assert code == 2 and "max_new_tokens" in capsys.readouterr().err


def test_sampling_methods_and_cost_model_from_the_cli(tiny_model_dir, prompts_file, reward_module, tmp_path):
    reward = ["--set", "reward.source=function", "--set", f"reward.function={reward_module}:length"]
    fast = ["--set", "train.progress=false", "--set", "generation.max_new_tokens=5", "--set", "train.batch_size=2"]
    model = ["--model", str(tiny_model_dir), "--data", str(prompts_file)]
    assert main(["train", "raft", *model, "--output", str(tmp_path / "raft"), *fast, *reward,
                 "--set", "iterations=2", "--set", "prompts_per_iteration=4", "--set", "samples_per_prompt=2"]) == 0
    raft = read_metrics(tmp_path / "raft" / "metrics.jsonl")
    assert len(raft) == 2 and all(r["reward/kept"] >= r["reward"] for r in raft)
    assert main(["train", "rso", *model, "--output", str(tmp_path / "rso"), *fast, *reward,
                 "--set", "num_candidates=4", "--set", "num_samples=2", "--set", "rso_beta=1.0"]) == 0
    pairs = [json.loads(line) for line in (tmp_path / "rso" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["margin"] > 0 for p in pairs)
    sft = write_jsonl(tmp_path / "sft.jsonl", sft_rows(4))
    assert main(["train", "spin", "--model", str(tiny_model_dir), "--data", str(sft), "--output",
                 str(tmp_path / "spin"), *fast, "--set", "iterations=2"]) == 0
    spin_pairs = (tmp_path / "spin" / "iter-1" / "pairs.jsonl").read_text().splitlines()
    assert json.loads(spin_pairs[0])["chosen"][0]["content"] in {r["messages"][1]["content"] for r in sft_rows(4)}
    assert (tmp_path / "spin" / "model.safetensors").exists()
    safety = write_jsonl(tmp_path / "safety.jsonl", [
        {"prompt": "How do I hurt someone?", "response_0": "I cannot help with that.", "response_1": "Sure, here is how.",
         "better_response_id": 1, "safer_response_id": 0, "is_response_0_safe": True, "is_response_1_safe": False}] * 8)
    assert main(["train", "cost", "--model", str(tiny_model_dir), "--data", str(safety), "--output",
                 str(tmp_path / "cost"), "--max-steps", "2", "--set", "train.batch_size=2",
                 "--set", "train.progress=false"]) == 0
    rows = read_metrics(tmp_path / "cost" / "metrics.jsonl")
    assert "sign_accuracy" in rows[0] and "accuracy" in rows[0]


def test_rso_and_spin_never_pair_an_empty_answer(tiny_model_dir, prompts_file, tmp_path, monkeypatch):
    """A model that sometimes answers nothing (EOS at once): its empty answers are left out of the pairs (the pair
    readers reject empty completions), where before they stopped the run."""
    import alignlab.outer.online.sampling as sampling
    from alignlab.core.generation import GenerationOutput
    from alignlab.outer.online.sampling import RSOConfig, SPINConfig, train_rso, train_spin

    answers = ["", "Hello there.", "", "Vell.", "I do not know.", ""]

    def sometimes_empty(model, tokenizer, prompts, config):
        texts = [answers[i % len(answers)] for i in range(len(prompts))]
        return GenerationOutput(prompt_ids=[[1]] * len(prompts), completion_ids=[[2]] * len(prompts), texts=texts,
                                finished=[True] * len(prompts), seconds=0.0)

    monkeypatch.setattr(sampling, "generate", sometimes_empty)
    fast = ["train.progress=false", "train.batch_size=2", "train.max_steps=1"]
    rso = load_config(RSOConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={prompts_file}",
                                        f"output={tmp_path / 'rso'}", "num_candidates=6", "num_samples=6", *fast])
    train_rso(rso, reward=lambda p, c: [-float(len(x)) for x in c])  # the empty answer scores best
    pairs = [json.loads(line) for line in (tmp_path / "rso" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"][0]["content"] and p["rejected"][0]["content"] for p in pairs)
    sft = write_jsonl(tmp_path / "sft.jsonl", sft_rows(6))
    spin = load_config(SPINConfig, None, [f"model.name_or_path={tiny_model_dir}", f"data.path={sft}",
                                          f"output={tmp_path / 'spin'}", "iterations=1", *fast])
    train_spin(spin)
    rejected = [json.loads(line)["rejected"][0]["content"]
                for line in (tmp_path / "spin" / "iter-0" / "pairs.jsonl").read_text().splitlines()]
    assert rejected and all(rejected)
