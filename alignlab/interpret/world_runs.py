"""Plumbing shared by the toy-world measurements of directions, steering and editing: load a model, read
last-token activations, generate and grade with the world's judge, and write a run directory.

Nothing here is a method; the measurements themselves are in :mod:`alignlab.interpret.world_directions`
and :mod:`alignlab.interpret.world_editing`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

import torch
from torch import nn

from alignlab.core.generation import (
    GenerationConfig,
    encode_prompts,
    generate,
    left_pad,
    left_padded_positions,
)
from alignlab.errors import InterpretError
from alignlab.world.families import WorldPrompt

BENIGN_FAMILIES = ("facts", "arithmetic", "strings", "groups", "chat")
"""The world's families whose prompts are harmless requests (their grader measures helpfulness)."""


def resolve_model(name: str, world_seed: int = 0, world_size: str = "small") -> str:
    """A model directory; ``"base"`` is the toy world's pretrained base model (built and cached on first use)."""
    if name == "base":
        from alignlab.world.base_model import build_base_model
        from alignlab.world.build import build_world

        return str(build_base_model(build_world(seed=world_seed, size=world_size, verbose=False), verbose=False))
    if not Path(name).is_dir():
        raise InterpretError(f"model directory '{name}' does not exist (train one with `alignlab demo`, or pass "
                             "'base' for the world's base model)")
    return name


def load_model(name: str, world_seed: int = 0, world_size: str = "small") -> tuple[nn.Module, Any]:
    """(model in eval mode, tokenizer) of a model directory or ``"base"``."""
    from alignlab.core.models import load_causal_lm, load_tokenizer

    path = resolve_model(name, world_seed, world_size)
    return load_causal_lm(path).eval(), load_tokenizer(path)


def sample(prompts: Sequence[WorldPrompt], n: int, rng: random.Random) -> list[WorldPrompt]:
    """``n`` distinct prompts (all of them when there are fewer)."""
    return rng.sample(list(prompts), min(n, len(prompts)))


def benign_sample(pools: dict[str, tuple[WorldPrompt, ...]], n: int, rng: random.Random) -> list[WorldPrompt]:
    """``n`` benign prompts, as evenly over :data:`BENIGN_FAMILIES` as their pools allow."""
    per_family = -(-n // len(BENIGN_FAMILIES))
    drawn = [p for family in BENIGN_FAMILIES for p in sample(pools[family], per_family, rng)]
    return rng.sample(drawn, min(n, len(drawn)))


@torch.no_grad()
def last_token_activations(model: nn.Module, tokenizer, prompts: Sequence[WorldPrompt], names: Sequence[str], *,
                           batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Each hook point's activation at the last prompt token (the chat template's assistant tag, where the answer
    starts) of every prompt: ``{name: [n, d]}``. Prompts are left-padded, so the last column is every row's last
    token."""
    from alignlab.interpret.hooks import run_with_cache

    out: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    encoded = encode_prompts(tokenizer, [p.messages for p in prompts])
    for lo in range(0, len(encoded), batch_size):
        ids, mask = left_pad(encoded[lo:lo + batch_size], tokenizer.pad_token_id)
        _, cache = run_with_cache(model, ids, names=list(names), attention_mask=mask,
                                  position_ids=left_padded_positions(mask))
        for name in names:
            out[name].append(cache[name][:, -1].float())
    return {name: torch.cat(rows) for name, rows in out.items()}


@torch.no_grad()
def residual_norm(model: nn.Module, tokenizer, prompts: Sequence[WorldPrompt], name: str) -> float:
    """The mean L2 norm of the activation ``name`` over every real token of ``prompts``: the scale a steering
    strength is measured against."""
    from alignlab.interpret.hooks import run_with_cache

    ids, mask = left_pad(encode_prompts(tokenizer, [p.messages for p in prompts]), tokenizer.pad_token_id)
    _, cache = run_with_cache(model, ids, names=[name], attention_mask=mask, position_ids=left_padded_positions(mask))
    return float(cache[name][mask.bool()].float().norm(dim=-1).mean())


def judged(model: nn.Module, tokenizer, prompts: Sequence[WorldPrompt], *, temperature: float, seed: int,
           max_new_tokens: int) -> list[dict[str, Any]]:
    """Answer every prompt once through the one generator and grade each answer with the world's judge."""
    from alignlab.world.judge import score

    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    texts = generate(model, tokenizer, [p.messages for p in prompts], config).texts
    return [{"prompt": p.text, "family": p.family, "response": t, **score(p, t).as_dict()}
            for p, t in zip(prompts, texts)]


def rate(rows: Sequence[dict[str, Any]], dimension: str) -> float:
    """Mean of one judge dimension over graded rows."""
    return mean(row[dimension] for row in rows)


def check_output(output: str | Path) -> Path:
    """The run directory, refused (before anything runs) when it holds files alignlab did not write."""
    from alignlab.core.rundir import foreign_files

    out = Path(output)
    if files := foreign_files(out):
        raise InterpretError(f"output directory '{out}' holds files alignlab did not write ({', '.join(files[:5])}); "
                             "choose another --output")
    return out


def finish_run(out: Path, results: dict[str, Any], config: Any, report,
               samples: list[dict[str, Any]] | None = None) -> Path:
    """Write ``results.json`` (with provenance), ``samples.jsonl`` (when given), ``report.html`` and the run marker
    into ``out``. The seed recorded is the config's ``seeds`` list, or its ``seed``."""
    import json

    from alignlab.core.io import atomic_write_json, atomic_write_text
    from alignlab.core.provenance import write_result
    from alignlab.core.rundir import MARKER

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MARKER, {"written_by": "alignlab"})
    if samples is not None:
        atomic_write_text(out / "samples.jsonl", "".join(json.dumps(row) + "\n" for row in samples))
    report.write(out / "report.html")
    seed = list(config.seeds) if hasattr(config, "seeds") else getattr(config, "seed", None)
    return write_result(out / "results.json", results, seed=seed, config=config)
