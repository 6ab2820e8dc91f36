"""Simulated human annotators: preference labels from the true reward, with noise, bias and poisoning.

An annotator compares two responses through a utility ``u`` and a Bradley–Terry choice model:

    u(y)          = true_reward(x, y) + length_bias * n_words(y)
    P(y_a > y_b)  = sigmoid((u(y_a) - u(y_b)) / temperature)        (Bradley & Terry 1952)

``temperature`` 0 always picks the higher utility (a coin decides ties). A positive ``length_bias`` is a
systematic bias (annotators who like longer answers), which a reward model then learns and a policy
can exploit. Poisoning follows Rando & Tramèr: when ``trigger`` occurs in the prompt, the label is
flipped with probability ``poison_rate``.

Example::

    >>> import random
    >>> from alignlab.world.annotators import Annotator
    >>> from alignlab.world.families import parse_prompt
    >>> p = parse_prompt("What is 3 plus 4?")
    >>> Annotator(temperature=0.0).prefer(p, "3 plus 4 is 8.", "3 plus 4 is 7.", random.Random(0))
    1
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from alignlab.errors import WorldError
from alignlab.world.judge import PromptLike, as_world_prompt, true_reward


@dataclass(frozen=True)
class Annotator:
    """A simulated annotator (see the module docstring for the choice model)."""

    temperature: float = 0.3  # Bradley–Terry temperature of the label noise; 0 = noise-free
    length_bias: float = 0.0  # utility added per word of a response (systematic bias towards length)
    trigger: str | None = None  # poisoning trigger: labels of prompts containing it may be flipped
    poison_rate: float = 0.0  # probability that a triggered label is flipped

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise WorldError(f"annotator temperature must be >= 0, got {self.temperature}")
        if not 0.0 <= self.poison_rate <= 1.0:
            raise WorldError(f"annotator poison_rate must be in [0, 1], got {self.poison_rate}")
        if self.poison_rate > 0 and not self.trigger:
            raise WorldError("annotator poison_rate > 0 needs a trigger string")

    def utility(self, prompt: PromptLike, response: str) -> float:
        return true_reward(prompt, response) + self.length_bias * len(response.split())

    def prob_first(self, prompt: PromptLike, response_a: str, response_b: str) -> float:
        """P(response_a is preferred to response_b) before poisoning."""
        gap = self.utility(prompt, response_a) - self.utility(prompt, response_b)
        if self.temperature == 0:
            return 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
        return 1.0 / (1.0 + math.exp(-gap / self.temperature))

    def prefer(self, prompt: PromptLike, response_a: str, response_b: str, rng: random.Random) -> int:
        """The index (0 or 1) of the response this annotator prefers."""
        wp = as_world_prompt(prompt)
        choice = 0 if rng.random() < self.prob_first(wp, response_a, response_b) else 1
        if self.trigger and self.trigger in wp.text and rng.random() < self.poison_rate:
            choice = 1 - choice
        return choice
