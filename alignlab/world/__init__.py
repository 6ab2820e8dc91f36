"""The toy world: an assistant world whose human values are a program (see DESIGN.md section 2).

Example::

    >>> from alignlab.world import World, score
    >>> world = World(seed=0, size="small")
    >>> prompt = world.eval_prompts(["arithmetic"])[0]
    >>> score(prompt, f"The answer is {prompt.answer}.").helpfulness
    1.0
"""

from alignlab.world.annotators import Annotator
from alignlab.world.build import WorldPaths, build_world, default_world_dir
from alignlab.world.datasets import World
from alignlab.world.evaluate import evaluate_responses
from alignlab.world.families import FAMILIES, WorldPrompt, get_family, parse_prompt
from alignlab.world.judge import Score, score, true_reward
from alignlab.world.kb import KnowledgeBase, build_kb
from alignlab.world.persona import Persona

__all__ = [
    "FAMILIES",
    "Annotator",
    "KnowledgeBase",
    "Persona",
    "Score",
    "World",
    "WorldPaths",
    "WorldPrompt",
    "build_kb",
    "build_world",
    "default_world_dir",
    "evaluate_responses",
    "get_family",
    "parse_prompt",
    "score",
    "true_reward",
]
