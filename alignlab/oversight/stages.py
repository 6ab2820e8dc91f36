"""What the feedback-driven oversight methods (constitutional AI, SELF-ALIGN, ILF, recursive reward modelling)
share on the toy world: stages that resume, the world's training questions and human-style data at a matched
budget, and the ground-truth scoring of several models at once.

A method is a few stages (generate data with a model, fine-tune, generate again ...). :func:`run_stage` runs one
stage and writes its JSON summary (``stage.json``) into its own directory when it has finished, and returns that
summary without running anything when the file is already there: a run that stopped part-way (a server that went
away mid-iteration) is re-run with the same command and picks up after the last finished stage.

Example::

    >>> import tempfile
    >>> calls = []
    >>> with tempfile.TemporaryDirectory() as d:
    ...     first = run_stage(d, "sl", lambda stage_dir: calls.append(1) or {"rows": 3})
    ...     again = run_stage(d, "sl", lambda stage_dir: calls.append(1) or {"rows": 4})
    >>> first, again, len(calls)
    ({'rows': 3}, {'rows': 3}, 1)
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.core.records import assistant, user
from alignlab.errors import OversightError
from alignlab.oversight.world_run import OversightRunConfig, TrainsLocally
from alignlab.world.families import WorldPrompt, parse_prompt
from alignlab.world.judge import true_reward

STAGE_FILE = "stage.json"
# The families whose answers can show a fault a critique names (strings tasks have none: alignlab.world.skills).
JUDGED_FAMILIES = ("facts", "unknowns", "arithmetic", "harmful", "groups", "chat")


def run_stage(run_dir: str | Path, name: str, body: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """Run ``body(stage_dir)`` unless ``run_dir/name/stage.json`` says it finished; return its summary.

    The summary is written last (through a temporary file), so a stage that failed part-way is run again."""
    stage_dir = Path(run_dir) / name
    done = stage_dir / STAGE_FILE
    if done.exists():
        return json.loads(done.read_text(encoding="utf-8"))
    stage_dir.mkdir(parents=True, exist_ok=True)
    summary = body(stage_dir)
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(done)
    return summary


def train_questions(world, n: int, families: tuple[str, ...] | list[str], seed: int) -> list[WorldPrompt]:
    """``n`` distinct training questions of ``families`` (drawn with ``seed``; never an evaluation prompt)."""
    pool = [p for f in families for p in world.splits.train[f]]
    if not pool:
        raise OversightError(f"the world has no training questions in the families {list(families)}")
    return random.Random(f"alignlab-oversight-questions-{seed}").sample(pool, min(n, len(pool)))


def human_sft_rows(path: str | Path, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` of the world's human-style demonstrations (``sft_train``): the SFT baseline at a matched budget."""
    from alignlab.world.datasets import read_jsonl

    rows = read_jsonl(path)
    return [{"messages": r["messages"]} for r in random.Random(f"alignlab-oversight-sft-{seed}").sample(rows, min(n, len(rows)))]


def human_pair_rows(path: str | Path, n: int, seed: int, kb=None) -> tuple[list[dict[str, Any]], float]:
    """``n`` of the world's annotator-labelled pairs (``pairs_train``, TRL conversational) and how often their
    label agrees with the truth (pairs with a true tie left out of the agreement)."""
    from alignlab.world.datasets import read_jsonl

    rows = random.Random(f"alignlab-oversight-pairs-{seed}").sample(read_jsonl(path), n)
    agree = []
    for r in rows:
        prompt = parse_prompt(r["prompt"][-1]["content"], kb)
        gap = true_reward(prompt, r["chosen"][-1]["content"]) - true_reward(prompt, r["rejected"][-1]["content"])
        if gap:
            agree.append(gap > 0)
    rows = [{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows]
    return rows, sum(agree) / max(1, len(agree))


def sft_row(question: str, answer: str) -> dict[str, Any]:
    """One SFT row (TRL conversational) of a question and its answer."""
    return {"messages": [user(question), assistant(answer)]}


def dpo_row(question: str, chosen: str, rejected: str) -> dict[str, Any]:
    """One DPO row (TRL conversational preference)."""
    return {"prompt": [user(question)], "chosen": [assistant(chosen)], "rejected": [assistant(rejected)]}


def score_models(models: dict[str, str | Path], paths, *, samples: int, limit: int | None, seed: int,
                 max_tokens: int = 48) -> dict[str, dict[str, Any]]:
    """The world's ground truth (:func:`alignlab.oversight.world_run.world_scores`) of every named model."""
    from alignlab.oversight.world_run import world_scores

    return {name: world_scores(model, paths, samples=samples, limit=limit, max_tokens=max_tokens, seed=seed)
            for name, model in models.items()}


def rate(values: list[bool]) -> float | None:
    """The share of True in ``values``; None when there are none."""
    return sum(values) / len(values) if values else None


# ---- the command's shared config and set-up -----------------------------------------------------------


@dataclass
class FeedbackRunConfig(TrainsLocally, OversightRunConfig):
    """A feedback-driven oversight method on the toy world (the fields every such command shares)."""

    output: str = "runs/oversee"
    """run directory: one sub-directory per stage (a re-run resumes after the last finished stage) and results.json"""
    result_file: str | None = None
    """where to write the result JSON (default: OUTPUT/results.json)"""
    max_tokens: int = 48
    """tokens per answer"""
    steps: int = 40
    """optimiser steps of every fine-tuning (the method's and its baseline's alike)"""
    lr: float = 1e-4
    """learning rate of every fine-tuning"""
    eval_samples: int = 2
    """answers sampled per held-out prompt for the ground-truth scores"""
    eval_limit: int | None = None
    """held-out prompts scored (null: all of them; a limit takes the families in turn, so none is left out)"""


def prepare(config: FeedbackRunConfig, stages: tuple[str, ...]):
    """Check the run directory, then load the world and the model: ``(paths, world, lm, models)``, where ``lm``
    is the model the protocol talks to and ``models`` says what is sampled and trained
    (:func:`alignlab.oversight.world_run.prepare_training`)."""
    from alignlab.evaluate.lm import load_lm
    from alignlab.oversight.world_run import prepare_training

    paths, world, models = prepare_training(config, stages)
    return paths, world, load_lm(models.sample), models


def write_results(config: FeedbackRunConfig, results: dict[str, Any]) -> dict[str, Any]:
    """Write ``results`` with provenance to ``config.result_file`` (default OUTPUT/results.json)."""
    from alignlab.core.provenance import write_result

    write_result(config.result_file or Path(config.output) / "results.json", results, seed=config.seed, config=config)
    return results


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows as JSON lines (a stage's raw data, kept beside its summary for reading)."""
    Path(path).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def require_rows(rows: list[Any], what: str, stats: dict[str, Any]) -> list[Any]:
    """``rows``, or an OversightError saying that the model's outputs gave nothing to train on, and why."""
    if not rows:
        shown = ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items()
                          if not isinstance(v, (list, dict)))
        raise OversightError(f"nothing to train on: {what} ({shown})")
    return rows
