"""Tables and figures of the inner-alignment page (docs/inner/index.md), from the result files the commands wrote:
``docs/results/inner/<experiment>.json`` (``alignlab inner run <experiment>``, its results.json copied) and
``benchmarks/results/ppo_vs_sb3.json`` (``python benchmarks/ppo_vs_sb3.py``). Each experiment module renders its
own table (``table(results)``) and figure (``plot(results)``), the same ones its HTML report shows."""

from __future__ import annotations

import importlib
import json
import statistics

from _common import ROOT, cell, cite, command, commit, load, machine

EXPERIMENTS = ("goal_misgeneralisation", "side_channel", "unidentifiability", "cross_episodic", "deceptive_conditions",
               "robust_reward", "relaxed_adversarial", "zero_shot")
BENCH = ROOT / "benchmarks" / "results" / "ppo_vs_sb3.json"


def markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def experiment_block(name: str):
    def render() -> str:
        module = importlib.import_module(f"alignlab.inner.experiments.{name}")
        record = load(f"inner/{name}.json")
        seeds = record["config"]["seeds"]
        return (markdown(*module.table(record["results"])) + f"\n\nMean ± half-width of the 95% Student-t interval "
                f"over {seeds} seeds.\n\n" + cite(f"inner/{name}.json"))
    return render


def ppo_vs_sb3() -> str:
    record = json.loads(BENCH.read_text())
    timings, returns = record["timings"], record["returns"]
    rows = [["alignlab PPO", f"{statistics.median(timings['alignlab_steps_per_s']):,.0f}",
             f"{returns['alignlab_mean']:.3f} ± {returns['alignlab_ci95']:.3f}"],
            ["Stable-Baselines3 PPO", f"{statistics.median(timings['sb3_steps_per_s']):,.0f}",
             f"{returns['sb3_mean']:.3f} ± {returns['sb3_ci95']:.3f}"]]
    config = record["config"]
    per_round = zip(timings["alignlab_steps_per_s"], timings["sb3_steps_per_s"])
    return (markdown(["", "env steps/s (median over rounds)", "final return (mean ± 95% interval)"], rows)
            + f"\n\nSpeed ratio alignlab / SB3: **{record['ratios']['steps_per_s']:.2f}×** (median of the per-round "
            f"ratios {', '.join(f'{a / b:.2f}' for a, b in per_round)}, on a machine shared with other jobs); "
            f"return difference alignlab − SB3: {returns['difference_mean']:+.3f} ± "
            f"{returns['difference_ci95']:.3f} over {config['rounds']} seeds, {config['total_steps']:,} steps each. "
            f"*From `benchmarks/results/ppo_vs_sb3.json`: `{cell(command(record))}` at commit `{commit(record)}` on "
            f"{cell(machine(record, ' per side'))}, Stable-Baselines3 {record.get('sb3_version')}.*"
            + env_speed_table(record))


def env_speed_table(record: dict) -> str:
    """Each environment's raw steps/s (random actions), measured by the same benchmark run."""
    rates = record.get("env_steps_per_s")
    if not rates:
        return ""
    copies = record["config"]["env_copies"]
    return ("\n\n" + markdown(["environment", f"steps/s ({copies} copies stepped together, random actions)"],
                               [[f"`{name}`", f"{rate:,.0f}"] for name, rate in rates.items()]))


def figure(name: str):
    def draw(path) -> None:
        from alignlab.inner.experiments.common import save_figure

        module = importlib.import_module(f"alignlab.inner.experiments.{name}")
        save_figure(module.plot(load(f"inner/{name}.json")["results"]), path)
    return draw


AVAILABLE = [name for name in EXPERIMENTS if (ROOT / "docs" / "results" / "inner" / f"{name}.json").exists()]
BLOCKS = {f"inner-{name.replace('_', '-')}": experiment_block(name) for name in AVAILABLE}
if BENCH.exists():
    BLOCKS["inner-ppo-vs-sb3"] = ppo_vs_sb3
FIGURES = {f"docs/inner/figures/{name}.png": figure(name) for name in AVAILABLE}
