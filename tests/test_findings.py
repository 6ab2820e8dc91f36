"""The two instruction-tuning findings as experiments: the data transforms, and one tiny end-to-end run."""

from __future__ import annotations

import json

import pytest
from conftest import build_model

from alignlab.cli import main
from alignlab.core.models import load_tokenizer
from alignlab.experiments.findings_bench import counterfactual_facts, delusive, simplified, with_questions
from alignlab.world.datasets import World
from alignlab.world.evaluate import evaluate_responses


@pytest.fixture(scope="module")
def records():
    return World(0, "small").sft_records(200)


def test_counterfactual_facts_are_wrong_by_the_judge_and_touch_only_facts(records) -> None:
    changed = counterfactual_facts(records, 1.0, seed=0)
    facts = [(r, c) for r, c in zip(records, changed) if r.meta["family"] == "facts"]
    assert facts and all(c.meta["contradicts"] for _, c in facts)
    originals = evaluate_responses([r.meta for r, _ in facts], [r.completion for r, _ in facts])
    wrong = evaluate_responses([c.meta for _, c in facts], [c.completion for _, c in facts])
    assert originals["helpfulness"] == 1.0 and wrong["helpfulness"] == 0.0  # every contradicting answer is wrong
    others = [(r, c) for r, c in zip(records, changed) if r.meta["family"] != "facts"]
    assert all(r.completion == c.completion for r, c in others)
    assert counterfactual_facts(records, 0.0, seed=0) == records


def test_simplified_and_delusive_definitions_keep_the_answers(records) -> None:
    cut = with_questions(records, simplified)
    assert [r.completion for r in cut] == [r.completion for r in records]
    assert all(len(c.prompt[-1]["content"]) <= len(r.prompt[-1]["content"]) for c, r in zip(cut, records))
    swapped = delusive(records, seed=0)
    assert [r.completion for r in swapped] == [r.completion for r in records]
    family_of = {json.dumps(r.prompt): r.meta["family"] for r in records}
    assert all(family_of[json.dumps(s.prompt)] != r.meta["family"] for s, r in zip(swapped, records))


@pytest.mark.xdist_group("world")
def test_findings_bench_runs_every_condition(tmp_path, monkeypatch, capsys) -> None:
    from test_offline_bench import TINY

    from alignlab.world.build import build_world
    from alignlab.world.datasets import DATASET_SIZES

    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    paths = build_world(tmp_path / "world", seed=0, verbose=False)
    build_model(tmp_path / "base", load_tokenizer(str(paths.tokenizer)), hidden=32, layers=1)
    argv = ["bench", "findings", "--world", "--world-dir", str(paths.root), "--output", str(tmp_path / "bench"),
            "--set", f"base_model={tmp_path / 'base'}", "--set", "contradict_fractions=[0.0,1.0]",
            "--set", "seeds=[0]", "--set", "steps=1", "--set", "batch_size=2", "--set", "eval_samples=1",
            "--set", "max_new_tokens=4"]
    assert main(argv) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "bench" / "results.json").read_text())["results"]
    assert [r["contradict_fraction"] for r in record["contradicting_facts"]] == [0.0, 1.0]
    assert [r["definition"] for r in record["task_definitions"]] == ["original", "simplified", "delusive"]
    runs = record["runs"]
    original = next(r for r in runs["task_definitions"] if r["definition"] == "original")
    plain = next(r for r in runs["contradicting_facts"] if r["contradict_fraction"] == 0.0)
    assert original["true_reward"] == plain["true_reward"]  # the same run, not trained twice
    assert next(r for r in runs["contradicting_facts"] if r["contradict_fraction"] == 1.0)["contradicting"] > 0
