"""The toy world as ``alignlab eval`` tasks: its ground-truth evaluation and KB factuality.

- ``world``: every held-out prompt family, answered by the model and graded by the world's judge;
  metrics are the alignment rates of :mod:`alignlab.world.evaluate` (helpfulness, honesty,
  harmlessness, toxicity, bias, true_reward, and Safe RLHF's cost: +1 harmful/toxic/biased, −1
  otherwise), with ``groups`` per prompt family.
- ``world_factuality``: questions about the knowledge base. ``fact_accuracy`` is the share of answers
  about known entities that state the KB's value; ``unknown_honesty`` the share of answers about
  entities the model never saw that admit not knowing instead of inventing a value.

Both sample ``samples`` answers per prompt at temperature 1 (the rates describe the model's
distribution, as ``alignlab world eval`` does). The world is the default cached one (built on first
use, seconds); ``--data`` / ``data_path`` names another world directory or a prompts JSONL file.

Example::

    >>> from alignlab.evaluate.run import EvalConfig, evaluate
    >>> evaluate(EvalConfig("runs/demo/dpo", ["world", "world_factuality"], "runs/eval"))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from alignlab.errors import EvalError
from alignlab.evaluate import metrics as M
from alignlab.evaluate.lm import LM
from alignlab.evaluate.tasks import TaskOutput
from alignlab.world.datasets import load_prompts
from alignlab.world.evaluate import RATE_FAMILIES
from alignlab.world.judge import score

#: metric → (judge dimension, families it is averaged over; None = all)
WORLD_METRICS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    **{rate: (rate, families) for rate, families in RATE_FAMILIES.items()},
    "true_reward": ("true_reward", None),
    "cost": ("cost", None),
}
FACTUALITY_METRICS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "fact_accuracy": ("helpfulness", ("facts",)),
    "unknown_honesty": ("honesty", ("unknowns",)),
}


@dataclass
class WorldTask:
    """Sample answers to the world's eval prompts and grade them with the judge."""

    name: str = "world"
    metrics: dict[str, tuple[str, tuple[str, ...] | None]] = field(default_factory=lambda: dict(WORLD_METRICS))
    data_path: str | None = None
    samples: int = 2
    max_tokens: int = 48
    temperature: float = 1.0
    seed: int = 0

    def _prompts(self):
        if self.data_path is None:
            from alignlab.world.build import build_world

            path = build_world(verbose=False).datasets["prompts_eval"]
        else:
            given = Path(self.data_path)
            path = given / "datasets" / "prompts_eval.jsonl" if given.is_dir() else given
            if not path.exists():
                raise EvalError(f"task '{self.name}': no world prompts at {path}")
        scored = [fams for _, fams in self.metrics.values()]
        families = None if None in scored else {f for fams in scored for f in fams}  # None: every family
        return [p for p in load_prompts(path) if families is None or p.family in families]

    def run(self, lm: LM, *, limit: int | None = None, judge: LM | None = None) -> TaskOutput:
        prompts = self._prompts()[:limit]
        if not prompts:
            raise EvalError(f"task '{self.name}': no prompts of the families it scores")
        responses = [
            lm.generate(
                [p.messages for p in prompts],
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                seed=self.seed + j,
            )
            for j in range(self.samples)
        ]
        samples: list[dict[str, Any]] = []
        for j in range(self.samples):
            for i, (prompt, response) in enumerate(zip(prompts, responses[j])):
                verdict = score(prompt, response)
                samples.append(
                    {"index": i, "sample": j, "prompt": prompt.text, "response": response, **verdict.as_dict(),
                     "cost": verdict.cost}
                )
        metrics, stderr = {}, {}
        for metric, (dimension, families) in self.metrics.items():
            values = [s[dimension] for s in samples if families is None or s["family"] in families]
            metrics[metric], stderr[metric] = M.mean_and_stderr(values) if values else (float("nan"), None)
        groups = {}
        for family in sorted({s["family"] for s in samples}):
            members = [s for s in samples if s["family"] == family]
            groups[family] = {
                **{metric: mean(s[dim] for s in members) for metric, (dim, _) in self.metrics.items()},
                "n": len(members),
            }
        return TaskOutput(
            metrics=metrics,
            stderr=stderr,
            n=len(samples),
            samples=samples,
            groups=groups,
            extra={"samples_per_prompt": self.samples, "temperature": self.temperature},
        )


def world_task(data_path: str | None = None) -> WorldTask:
    return WorldTask("world", WORLD_METRICS, data_path)


def world_factuality_task(data_path: str | None = None) -> WorldTask:
    return WorldTask("world_factuality", FACTUALITY_METRICS, data_path)
