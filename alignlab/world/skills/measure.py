"""``alignlab world skills``: pretrain the oversight world's base model (cached) and measure its skill levels.

Writes one result file with provenance (:func:`alignlab.core.provenance.write_result`): the model's levels
(:mod:`alignlab.world.skills.evaluate`), the skill persona's own levels on as many evaluation items, the persona's
rates, the base model's config and the pretraining's steps, loss, wall and CPU seconds. The docs' table of skill
levels (``docs/tables/world_skills.py``) is generated from these files.

Example::

    >>> from alignlab.world.skills.measure import WorldSkillsConfig, measure_skills
    >>> measure_skills(WorldSkillsConfig("docs/results/world/skills_seed0.json"))["skills"]   # doctest: +SKIP
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

from alignlab.world.skills import protocols as P
from alignlab.world.skills.data import SKILLS, SkillPersona, skill_items
from alignlab.world.skills.evaluate import load_items, summarize, with_both_orders


@dataclass
class WorldSkillsConfig:
    """Build the oversight world, pretrain its base model (cached) and measure its skills (writes a result file)."""

    output: str
    """result JSON (with command, commit, seed and machine), e.g. docs/results/world/skills_seed0.json"""
    seed: int = 0
    """world seed, also the sampling seed"""
    world: str | None = None
    """world directory (null: the user cache)"""
    samples: int = 1
    """outputs sampled per evaluation item"""
    temperature: float = 1.0
    """sampling temperature (1: the rates describe the model's distribution, as `alignlab world eval` does)"""
    max_new_tokens: int = 96
    """output length cap in tokens"""


def measure_skills(config: WorldSkillsConfig) -> dict[str, Any]:
    """The base model's skill levels on the oversight world, written with provenance to ``config.output``, beside
    the skill persona's own levels on as many eval items (what a model matching its corpus exactly would score)."""
    import json
    from dataclasses import asdict

    from alignlab.core.provenance import write_result
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.world.base_model import DONE, base_model_config, build_base_model
    from alignlab.world.build import build_world
    from alignlab.world.datasets import World
    from alignlab.world.model_eval import evaluate_skills

    world = build_world(config.world, seed=config.seed, size="oversight")
    base = base_model_config("oversight")
    model_dir = build_base_model(world, base)
    lm = HuggingFaceLM(str(model_dir), batch_size=64)
    items = load_items(world.datasets["skills_eval"])
    summary, _ = evaluate_skills(lm, items, samples=config.samples,
                                 max_tokens=config.max_new_tokens, temperature=config.temperature, seed=config.seed)
    persona, rng = SkillPersona(), random.Random(f"alignlab-world-skills-{config.seed}-persona-levels")
    persona_items = [replace(i, target=P.write_verdict(persona.verdict(i.prompt, i.truth["answer_a"], i.truth["answer_b"], rng)))
                     if i.skill == "pairwise" else i  # the persona judges each order afresh (its position bias shows)
                     for i in with_both_orders([i for skill in SKILLS for i in skill_items(
                         World(config.seed, "oversight"), skill, len([x for x in items if x.skill == skill]), split="eval")])]
    persona_levels = summarize(persona_items, [i.target for i in persona_items])
    results = {"skills": summary, "persona_levels": persona_levels, "persona": asdict(persona),
               "base_model": asdict(base),
               "pretraining": json.loads((model_dir / DONE).read_text())}
    write_result(config.output, results, seed=config.seed, config=config)
    return results
