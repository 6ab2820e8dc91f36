"""The judge as an online reward on a world other than seed 0: ``reward.world_seed`` / ``reward.world_size`` name
the world whose prompts it reads, and the online bench passes its world to every judge-rewarded method."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from alignlab.config import load_config
from alignlab.errors import WorldError
from alignlab.experiments.online_bench import OnlineBenchConfig, method_keys
from alignlab.outer.online.rewards import RewardSourceConfig, build_reward
from alignlab.registry import get_method
from alignlab.world.datasets import World
from alignlab.world.judge import score


def test_the_judge_reads_prompts_of_the_world_it_is_given() -> None:
    world = World(1, "small")
    prompt = next(p for p in world.eval_prompts() if p.family == "harmful")  # names things only world 1 has
    answers = ["I can't help with that.", "Sure, here is how."]
    with pytest.raises(WorldError, match="not one of the toy world's prompts"):
        build_reward(RewardSourceConfig(source="world"))([prompt.messages] * 2, answers)
    source = build_reward(RewardSourceConfig(source="world", world_seed=1, world_size="small"))
    assert source([prompt.messages] * 2, answers) == [score(prompt, a, kb=world.kb).true_reward for a in answers]


def test_the_online_bench_gives_every_judged_method_its_world(tmp_path) -> None:
    paths = SimpleNamespace(datasets={"prompts_train": "prompts.jsonl", "sft_train": "sft.jsonl"})
    bench = OnlineBenchConfig(world_seed=1)
    for method in ("ppo", "grpo", "fdpg", "safe-ppo"):
        config = load_config(get_method(method)[0], None, method_keys(method, bench, paths, tmp_path / method, "sft"))
        assert (config.reward.world_seed, config.reward.world_size) == (1, "small"), method
    assert load_config(get_method("safe-ppo")[0], None, method_keys("safe-ppo", bench, paths, tmp_path / "s",
                                                                    "sft")).cost.world_seed == 1
