"""Config: defaults <- YAML <- overrides, type checks, unknown keys named, help from field docstrings."""

from __future__ import annotations

import pytest

from alignlab.config import describe, field_docs, load_config, save_config
from alignlab.errors import ConfigError
from alignlab.outer.sft import SFTConfig


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.001\n  batch_size: 4\ndata:\n  path: a.jsonl\n")
    cfg = load_config(SFTConfig, path, ["train.lr=0.5", "packing=true", "model.name_or_path=m"])
    assert cfg.train.lr == 0.5 and cfg.train.batch_size == 4 and cfg.packing is True
    assert cfg.data.path == "a.jsonl" and cfg.model.name_or_path == "m"
    assert cfg.train.max_steps == -1  # untouched defaults survive a partial YAML section


def test_round_trip(tmp_path):
    cfg = load_config(SFTConfig, None, ["train.seed=3", "data.max_length=64"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(SFTConfig, tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", r"unknown config key 'train.lrr'.*did you mean lr"),
    ("nonsense=1", "unknown config key 'nonsense'"),
    ("train.batch_size=abc", "train.batch_size: expected an integer"),
    ("train.batch_size=0", "batch_size must be >= 1"),
    ("train.scheduler=zigzag", "not one of"),
    ("packing=maybe", "expected true/false"),
    ("train.lr", "not of the form key=value"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(SFTConfig, None, [override])


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(SFTConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(SFTConfig, bad)


def test_help_comes_from_field_docstrings():
    docs = field_docs(SFTConfig)
    assert "completion" in docs["completion_only"]
    keys = {key: doc for key, _, doc in describe(SFTConfig)}
    assert "train.lr" in keys and keys["train.lr"] == "peak learning rate"
    assert all(doc for doc in keys.values()), [k for k, d in keys.items() if not d]


def test_section_override_keeps_the_parents_section_defaults():
    from alignlab.outer.reward import RewardModelConfig

    default = RewardModelConfig()
    cfg = load_config(RewardModelConfig, None, ["train.max_steps=3"])
    assert cfg.train.max_steps == 3
    assert cfg.train.lr == default.train.lr == 1e-5  # RewardModelConfig's own lr, not TrainConfig's 5e-5
    assert cfg.data.eval_fraction == default.data.eval_fraction == 0.05
