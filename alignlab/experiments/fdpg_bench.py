"""``alignlab bench fdpg --world``: f-DPG under each of its f-divergences from one SFT model, measured for reward
*and* diversity.

Go et al. (2023, "Aligning Language Models with Preferences through f-divergence Minimization") approximate the
target ``π_SFT · exp(r/β) / Z`` by minimising different f-divergences; reverse KL is RLHF's objective (mode-seeking),
forward KL the original DPG (mode-covering), total variation and Jensen–Shannon lie between. The side-by-side
outer bench trains each for its short shared budget; this bench trains each divergence longer, from the same SFT
model, on the judge's true reward, and per divergence reports:

- the world's verdicts on ``eval_samples`` answers per held-out prompt at temperature 1 (true reward, its paired
  gain over the SFT model, the judge's other rates) and KL(π‖π_SFT) per answer and per token on the same answers,
  exactly as every world bench evaluates (:func:`alignlab.experiments.bench.evaluate_policy`);
- the diversity of the answers to one prompt, averaged over prompts
  (:func:`alignlab.evaluate.diversity.per_prompt_diversity`: fraction of distinct answers, distinct-1, distinct-2,
  self-BLEU);
- from the run's ``metrics.jsonl``: the mean per-token policy entropy and the training reward and KL (to π_SFT,
  per sequence) over the last tenth of the steps, and the whole trajectory (step, reward, KL, entropy).

The SFT model itself is the first row. ``results.json`` (command, commit, seed and machine) holds the rows.

Example::

    >>> from alignlab.experiments.fdpg_bench import FDPGBenchConfig, bench_fdpg
    >>> rows = bench_fdpg(FDPGBenchConfig(world=True, max_steps=200))   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignlab.experiments.bench import WorldBenchConfig
from alignlab.experiments.outer_bench import DIVERGENCES

DIVERSITY = ("unique", "distinct_1", "distinct_2", "self_bleu")
COLUMNS = ("true_reward", "gain_vs_sft", "kl_to_sft", "kl_per_token", *DIVERSITY, "train_entropy", "train_reward",
           "train_kl")


@dataclass
class FDPGBenchConfig(WorldBenchConfig):
    """f-DPG under each f-divergence from one SFT model: true reward, KL to the SFT model and diversity."""

    output: str = "runs/bench-fdpg"
    """directory for results.json and each divergence's run"""
    divergences: list[str] = field(default_factory=lambda: list(DIVERGENCES))
    """f-divergences to train: reverse_kl, forward_kl, tv, js"""
    max_steps: int = 200
    """rollout steps per divergence (each 16 answers: 4 prompts × 4)"""
    beta: float = 0.1
    """temperature of the target π_SFT·exp(r/β), the same for every divergence"""
    eval_samples: int = 8
    """answers sampled (temperature 1) per held-out prompt; diversity is measured among them"""
    tail_fraction: float = 0.1
    """the last fraction of training steps whose mean entropy, reward and KL are reported"""

    def __post_init__(self) -> None:
        import difflib

        for name in self.divergences:
            if name not in DIVERGENCES:
                close = difflib.get_close_matches(name, DIVERGENCES, n=1)
                raise ValueError(f"no f-divergence {name!r}" + (f"; did you mean {close[0]}?" if close else "")
                                 + f"; divergences: {', '.join(DIVERGENCES)}")
        if self.eval_samples < 2:
            raise ValueError("bench fdpg needs eval_samples >= 2: diversity is measured among a prompt's answers")


def training_summary(metrics_path: Path, tail_fraction: float) -> dict[str, Any]:
    """The run's trajectory ([step, reward, KL, entropy] per step) and the means of the last ``tail_fraction`` of
    its steps.

    Example::

        >>> import json, tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> _ = path.write_text("".join(json.dumps({"step": s, "reward": s, "kl": 0.0, "entropy": 1.0}) + "\\n"
        ...                             for s in (1, 2, 3, 4)))
        >>> summary = training_summary(path, 0.5)
        >>> summary["train_reward"], summary["trajectory"][0]
        (3.5, [1, 1, 0.0, 1.0])
    """
    rows = [r for r in map(json.loads, metrics_path.read_text().splitlines()) if "reward" in r]
    tail = rows[-max(1, round(len(rows) * tail_fraction)):]
    return {**{f"train_{key}": sum(r[key] for r in tail) / len(tail) for key in ("reward", "kl", "entropy")},
            "trajectory": [[r["step"], r["reward"], r["kl"], r["entropy"]] for r in rows]}


def bench_fdpg(config: FDPGBenchConfig) -> list[dict[str, Any]]:
    """Evaluate the SFT model, then train and evaluate f-DPG under each divergence of ``config.divergences``;
    write results.json after every row; return the rows."""
    from alignlab.core.provenance import write_result
    from alignlab.evaluate.diversity import per_prompt_diversity
    from alignlab.experiments.bench import evaluate_policy, responder
    from alignlab.experiments.online_bench import train_online_method
    from alignlab.experiments.outer_bench import OuterBenchConfig, finish_row, setting

    clock = time.process_time()
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(WorldBenchConfig)} | {"methods": []}
    s = setting(OuterBenchConfig(**shared))
    s.out.mkdir(parents=True, exist_ok=True)

    def evaluate(model: str) -> dict[str, Any]:
        result = evaluate_policy(model, s.sft, s.tokenizer, s.prompts, responder("grpo", None), s.offline,
                                 keep_answers=True)
        answers = result.pop("answers")  # thousands of texts: the row keeps the judge's examples only
        return {**result, **per_prompt_diversity(answers, len(s.prompts))}

    start = evaluate(s.sft_path)
    rows = [finish_row("sft (start)", {**start, "kl_to_sft": 0.0}, 0.0, start)]

    def write() -> None:
        write_result(s.out / "results.json", {"rows": rows, "sft_model": s.sft_path, "prompts": len(s.prompts),
                                              "cpu_seconds": time.process_time() - clock}, seed=config.seed, config=config)

    write()
    for divergence in config.divergences:
        run_dir = s.out / "runs" / divergence
        keys = [f"divergence={divergence}", f"beta={config.beta}", *config.overrides.get("fdpg", [])]
        online = dataclasses.replace(s.online, overrides={"fdpg": keys})
        train_clock = time.process_time()
        train_online_method("fdpg", online, s.paths, run_dir, s.sft_path)
        seconds = time.process_time() - train_clock
        row = finish_row(divergence, evaluate(str(run_dir)), seconds, start)
        rows.append({**row, **training_summary(run_dir / "metrics.jsonl", config.tail_fraction)})
        write()
        print(f"[bench fdpg] {divergence}: true reward {row['true_reward']:.3f} (gain {row['gain_vs_sft']:+.3f}), "
              f"KL {row['kl_to_sft']:.2f}, distinct-2 {row['distinct_2']:.3f}, self-BLEU {row['self_bleu']:.3f}, "
              f"train {seconds:.0f} CPU-s", flush=True)
    return rows
