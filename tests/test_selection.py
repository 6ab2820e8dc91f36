"""Small-data SFT selection: KCenterGreedy, k-means quotas, embeddings, `alignlab data select`, and the bench."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_model, sft_rows, write_jsonl

from alignlab.cli import main
from alignlab.core.models import load_causal_lm, load_tokenizer
from alignlab.core.records import ConversationRecord
from alignlab.errors import DataError
from alignlab.outer.selection import embed_records, kcenter_greedy, select_indices


def blobs(sizes: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Points in well-separated blobs (centres 100 apart, spread 1) and each point's blob."""
    g = torch.Generator().manual_seed(seed)
    points = [torch.randn(n, 3, generator=g) + 100.0 * b for b, n in enumerate(sizes)]
    return torch.cat(points), torch.cat([torch.full((n,), b) for b, n in enumerate(sizes)])


def coverage_radius(points: torch.Tensor, chosen: list[int]) -> float:
    """The k-center objective: the largest distance from any point to its nearest chosen point."""
    return float(torch.cdist(points, points[chosen]).min(dim=1).values.max())


def test_kcenter_greedy_takes_one_point_per_blob_before_any_second() -> None:
    points, blob = blobs([50, 5, 5])
    chosen = kcenter_greedy(points, 3, first=0)
    assert sorted(int(blob[i]) for i in chosen) == [0, 1, 2]  # a random pick would mostly land in the big blob
    assert kcenter_greedy(points, 3, first=0, chosen=chosen[:2]) == chosen  # continues from a partial choice


def test_kcenter_greedy_is_within_twice_the_best_coverage() -> None:
    """Gonzalez's bound: the greedy radius is at most twice the optimum, which no k-subset beats, so it is at most
    twice the best radius of many random k-subsets too."""
    points = torch.randn(60, 2, generator=torch.Generator().manual_seed(1))
    greedy = coverage_radius(points, kcenter_greedy(points, 6, first=0))
    g = torch.Generator().manual_seed(2)
    radii = sorted(coverage_radius(points, torch.randperm(60, generator=g)[:6].tolist()) for _ in range(300))
    assert greedy <= 2 * radii[0]
    assert greedy < radii[len(radii) // 2]  # and it beats a typical random draw


def test_kmeans_selectors_cover_clusters_in_proportion() -> None:
    points, blob = blobs([60, 30, 10])
    quota = [int(blob[i]) for i in select_indices(points, 10, "kmeans_kcenter", seed=0, clusters=3)]
    assert [quota.count(b) for b in range(3)] == [6, 3, 1]
    nearest = [int(blob[i]) for i in select_indices(points, 3, "kmeans", seed=0, clusters=3)]
    assert sorted(nearest) == [0, 1, 2]
    assert len(set(select_indices(points, 10, "random", seed=0))) == 10
    assert select_indices(points, 10, "random", seed=0) != select_indices(points, 10, "random", seed=1)
    with pytest.raises(DataError, match="unknown selector 'best'"):
        select_indices(points, 3, "best")
    with pytest.raises(DataError, match="cannot choose 200 of 100"):
        select_indices(points, 200, "kcenter")


def test_every_selector_returns_k_distinct_examples_even_with_duplicates() -> None:
    points = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0], [5.0, 5.0]] * 5)
    for selector in ("random", "kcenter", "kmeans", "kmeans_kcenter"):
        chosen = select_indices(points, 12, selector, seed=0, clusters=12 if selector == "kmeans" else 3)
        assert len(chosen) == len(set(chosen)) == 12, selector
    assert len(set(kcenter_greedy(points, 30, first=0))) == 30  # every row, once
    with pytest.raises(DataError, match="clusters must equal the budget"):
        select_indices(points, 10, "kmeans", clusters=3)


def test_embeddings_ignore_padding_and_tell_examples_apart(tiny_model_dir) -> None:
    model, tokenizer = load_causal_lm(str(tiny_model_dir)), load_tokenizer(str(tiny_model_dir))
    short = ConversationRecord([{"role": "user", "content": "hi"}], "yo")
    long = ConversationRecord([{"role": "user", "content": "tell me a long story about rivers"}],
                              "once upon a time there was a very long river")
    alone = embed_records(model, tokenizer, [short])
    batched = embed_records(model, tokenizer, [short, long])  # short is padded to long's length here
    assert batched.shape == (2, model.config.hidden_size)
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[0], batched[1], atol=1e-3)


def test_data_select_command_writes_the_chosen_rows(tmp_path, tiny_model_dir, capsys) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(20))
    out = tmp_path / "chosen.jsonl"
    argv = ["data", "select", "--data", str(data), "--model", str(tiny_model_dir), "--selector", "kcenter",
            "--count", "5", "--output", str(out)]
    assert main(argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    originals = [json.loads(line) for line in data.read_text().splitlines()]
    pairs = {(o["messages"][0]["content"], o["messages"][1]["content"]) for o in originals}
    assert len(rows) == 5 and all((r["prompt"][0]["content"], r["completion"][0]["content"]) in pairs for r in rows)
    assert "chose 5 examples by kcenter" in capsys.readouterr().out
    assert main(argv) == 2  # never overwrites
    assert "exists" in capsys.readouterr().err
    assert main(["data", "select", "--data", str(data), "--selector", "kcenter", "--output", str(tmp_path / "x")]) == 2
    assert "give --model" in capsys.readouterr().err


@pytest.mark.xdist_group("world")
def test_selection_bench_trains_every_cell_and_aggregates_over_seeds(tmp_path, monkeypatch) -> None:
    from test_offline_bench import TINY

    from alignlab.experiments.selection_bench import SelectionBenchConfig, bench_selection
    from alignlab.world.build import build_world
    from alignlab.world.datasets import DATASET_SIZES

    monkeypatch.setitem(DATASET_SIZES, "small", TINY)
    paths = build_world(tmp_path / "world", seed=0, verbose=False)
    build_model(tmp_path / "base", load_tokenizer(str(paths.tokenizer)), hidden=32, layers=1)
    config = SelectionBenchConfig(world=True, world_dir=str(paths.root), base_model=str(tmp_path / "base"),
                                  output=str(tmp_path / "bench"), fractions=[0.25], selectors=["random", "kcenter"],
                                  seeds=[0, 1], epochs=1, eval_samples=1, max_new_tokens=4, batch_size=2)
    rows = bench_selection(config)
    record = json.loads((tmp_path / "bench" / "results.json").read_text())
    runs = record["results"]["runs"]
    assert sorted((r["selector"], r["seed"]) for r in runs) == [("all", 0), ("all", 1), ("kcenter", 0),
                                                               ("kcenter", 1), ("random", 0), ("random", 1)]
    assert {r["examples"] for r in runs if r["selector"] != "all"} == {4} and {r["steps"] for r in runs} == {2, 8}
    for row in rows:
        mine = [r["true_reward"] for r in runs if r["selector"] == row["selector"]]
        assert row["true_reward"] == pytest.approx(sum(mine) / 2) and row["seeds"] == 2
    assert record["seed"] == [0, 1] and record["config"]["fractions"] == [0.25]
    assert not (tmp_path / "bench" / "runs" / "random-0.25-seed0").exists()  # models deleted, numbers kept
    assert "True reward against the share of the data" in (tmp_path / "bench" / "report.html").read_text()
