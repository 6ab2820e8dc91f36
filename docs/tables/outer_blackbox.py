"""Tables of the black-box steering page (docs/training/blackbox.md), from ``alignlab bench blackbox --world``."""

from __future__ import annotations

from _common import cite, fmt, load

BENCH = "outer/blackbox/bench.json"
SERVED = "outer/blackbox/dsp_served.json"
COLUMNS = ("true_reward", "gain", "fault_rate", "helpfulness", "honesty", "harmlessness", "toxicity", "bias")


def _table(summary: dict, columns: tuple[str, ...] = COLUMNS) -> list[str]:
    rows = ["| condition | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
            "|---" * (len(columns) + 1) + "|"]
    for condition, values in summary.items():
        if condition == "training":
            continue
        rows.append(f"| {condition} | " + " | ".join(fmt(values[c]["mean"], values[c]["se"]) for c in columns) + " |")
    return rows


def _training(summary: dict) -> str:
    t = summary["training"]
    return (f"RL stage: mean reward of the first five steps {fmt(t['reward_first_steps']['mean'], t['reward_first_steps']['se'])}, "
            f"of the last five {fmt(t['reward_last_steps']['mean'], t['reward_last_steps']['se'])}; "
            f"warm start + RL took {fmt(t['train_seconds']['mean'], t['train_seconds']['se'], 0)} s per seed.")


def _method(name: str) -> str:
    part = load(BENCH)["results"][name]
    return "\n".join(_table(part["summary"])) + (
        f"\n\n{_training(part['summary'])} Mean ± standard error over {len(part['runs'])} seeds.\n\n{cite(BENCH)}")


def served() -> str:
    record = load(SERVED)
    part = record["results"]["dsp"]
    return "\n".join(_table(part["summary"])) + f"\n\n{_training(part['summary'])}\n\n{cite(SERVED)}"


BLOCKS = {"outer_blackbox-dsp": lambda: _method("dsp"),
          "outer_blackbox-rl4f": lambda: _method("rl4f"),
          "outer_blackbox-served": served}
