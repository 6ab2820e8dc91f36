"""``alignlab bench outer``: every outer-alignment row from one SFT model, one budget and one evaluation, end to end
on a tiny world with a tiny model."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from conftest import build_model
from test_offline_bench import world_and_model  # noqa: F401, F811 (a fixture, used by name)

from alignlab.cli import main
from alignlab.core.models import load_tokenizer
from alignlab.experiments.outer_bench import COLUMNS, ROWS, OuterBenchConfig


@pytest.fixture
def tiny_world(world_and_model, tmp_path, monkeypatch):  # noqa: F811 (the fixture imported above)
    """The offline bench's tiny world and SFT model, and another tiny model as the world's base model (RLSF's
    weaker generator, DSP's hint writer), so nothing is pretrained."""
    import alignlab.world.base_model as base_module

    paths, sft = world_and_model
    build_model(tmp_path / "base", load_tokenizer(str(paths.tokenizer)), hidden=32, layers=1, seed=1)
    monkeypatch.setattr(base_module, "build_base_model", lambda paths, config=None, **kw: tmp_path / "base")
    return paths, sft


def bench(paths, sft, out, *sets: str) -> list[dict]:
    argv = ["bench", "outer", "--world", "--world-dir", str(paths.root), "--output", str(out), "--sft-model", str(sft),
            "--max-steps", "1", *[x for s in ("eval_samples=1", "batch_size=4", "max_new_tokens=4", "synthetic_prompts=4", "dsp_prompts=16",
                                              "sensei_prompts=2", "probe_pairs=8", *sets) for x in ("--set", s)]]
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


def test_every_row_trains_from_the_one_sft_model_and_is_judged_by_the_one_protocol(tiny_world, tmp_path, capsys):
    paths, sft = tiny_world
    record = bench(paths, sft, tmp_path / "bench", "dexperts_alpha=0")
    rows = {r["method"]: r for r in record["results"]["rows"]}
    assert list(rows) == ["sft (start)", *ROWS] and record["seed"] == 0 and record["command"][1:3] == ["bench", "outer"]
    assert all(set(COLUMNS) <= set(row) for row in rows.values())
    start = rows["sft (start)"]
    assert start["gain_vs_sft"] == 0.0 and start["kl_to_sft"] == 0.0 and start["added_generation_cpu_seconds"] == 0.0
    # DExperts at α = 0 is the SFT model's own logits: the same prompts and seed give the same answers, so the one
    # protocol must give the same verdicts, a zero gain and a zero KL
    assert rows["dexperts"]["examples"] == start["examples"] and rows["dexperts"]["gain_vs_sft"] == 0.0
    assert rows["dexperts"]["kl_to_sft"] == 0.0
    for name in ROWS:  # everything that trains or fits something spends CPU time on it
        assert rows[name]["train_cpu_seconds"] > 0.0, name
        assert len(rows[name]["per_prompt_reward"]) == len(start["per_prompt_reward"]), name
    for name in ("uddia", "dsp"):  # decoded under tuned biases or sampled hints: not one model's distribution
        assert rows[name]["kl_to_sft"] is None and rows[name]["kl_per_token"] is None
    for name in set(ROWS) - {"uddia", "dsp"}:
        assert math.isfinite(rows[name]["kl_to_sft"]) and rows[name]["kl_per_token"] is not None, name
    runs = tmp_path / "bench" / "runs"

    def config(run: str) -> dict:
        return yaml.safe_load((runs / run / "config.yaml").read_text())

    for divergence in ("reverse_kl", "forward_kl", "tv", "js"):
        assert config(f"fdpg-{divergence}")["divergence"] == divergence
    assert {config(r)["model"]["name_or_path"] for r in ("dpo", "grpo", "alol", "grpo-rules", "rlsf")} == {str(sft)}
    assert config("grpo")["reward"]["source"] == "world"
    assert config("grpo-rules")["reward"] == {**config("grpo-rules")["reward"], "source": "rules",
                                              "model": str(runs / "rule-reward")}
    assert config("rlsf")["reward"]["model"] == str(runs / "rlsf-reward")
    assert config("dsp")["frozen"] == str(sft)
    assert "[bench outer] dsp" in capsys.readouterr().out


def test_unknown_row_names_the_close_match() -> None:
    with pytest.raises(ValueError, match="did you mean fdpg-js"):
        OuterBenchConfig(world=True, methods=["fdpg-jsd"])
