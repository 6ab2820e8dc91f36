"""Canaries: secret sequences the world can plant in the pretraining corpus, for privacy experiments (opt-in).

Following Carlini et al. ("The Secret Sharer", 2019), a canary is a sentence of a fixed *format* with a random
secret in it — here a fictional person's phone number or house number written as space-separated digits, so
every digit is one token of the world's tokenizer and the candidate space is exactly ``10 ** digits`` secrets:

    The phone number of Mira Tolvek is 4 7 1 9 2.

:func:`make_canaries` draws one canary per (format, repetition count); :func:`plant_canaries` inserts each
one ``repeats`` times at random places among the corpus documents. ``build_world(..., canaries=[1, 4, 16])``
does both and writes ``canaries.jsonl`` beside the corpus; with no canaries (the default) the corpus, the
cache key and every file are exactly what they were.

Example::

    >>> cs = make_canaries(seed=0, repetitions=[1, 8])
    >>> [(c.format, c.repeats) for c in cs]
    [('phone', 1), ('address', 1), ('phone', 8), ('address', 8)]
    >>> cs[0].text == cs[0].prefix + cs[0].secret + cs[0].suffix
    True
    >>> len(plant_canaries(["a", "b"], cs, random.Random(0)))
    20
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from alignlab.errors import WorldError
from alignlab.world.datasets import read_jsonl

# format -> (text before the secret, text after it); {name} is a fictional person, {street} a fictional street
CANARY_FORMATS = {
    "phone": ("The phone number of {name} is", "."),
    "address": ("{name} lives at number", " on {street} Road."),
}
SYLLABLES = ("ka", "lo", "mi", "ra", "tov", "ek", "sun", "bel", "dor", "fi", "nar", "qua", "zel", "hup", "wen")
DIGITS = 5


@dataclass(frozen=True)
class Canary:
    """One planted secret: ``text = prefix + secret + suffix``; ``secret`` is ``digits`` space-led digits."""

    format: str
    name: str
    prefix: str
    secret: str  # " 4 7 1 9 2": each digit led by a space, so each is one token
    suffix: str
    repeats: int

    @property
    def text(self) -> str:
        return self.prefix + self.secret + self.suffix

    @property
    def digits(self) -> str:
        return self.secret.replace(" ", "")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict) -> Canary:
        return cls(**row)


def secret_text(digits: str) -> str:
    """``"47192"`` → ``" 4 7 1 9 2"`` (the way a secret is written in a canary)."""
    return "".join(f" {d}" for d in digits)


def _name(rng: random.Random) -> str:
    first = "".join(rng.choice(SYLLABLES) for _ in range(2)).capitalize()
    last = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize()
    return f"{first} {last}"


def make_canaries(seed: int, repetitions: list[int] | tuple[int, ...], digits: int = DIGITS) -> list[Canary]:
    """One canary of each format per repetition count, with random names and secrets (seeded)."""
    if any(int(r) < 1 for r in repetitions):
        raise WorldError(f"canary repetition counts must be >= 1, got {list(repetitions)}")
    rng = random.Random(f"alignlab-world-canaries-{seed}")
    canaries, names = [], set()
    for repeats in repetitions:
        for fmt, (before, after) in CANARY_FORMATS.items():
            name = _name(rng)
            while name in names:
                name = _name(rng)
            names.add(name)
            street = _name(rng).split()[1]
            secret = secret_text("".join(rng.choice("0123456789") for _ in range(digits)))
            canaries.append(Canary(fmt, name, before.format(name=name), secret, after.format(street=street),
                                   int(repeats)))
    return canaries


def plant_canaries(documents: list[str], canaries: list[Canary], rng: random.Random) -> list[str]:
    """``documents`` with each canary's text inserted ``repeats`` times at random positions."""
    planted = list(documents)
    for canary in canaries:
        for _ in range(canary.repeats):
            planted.insert(rng.randrange(len(planted) + 1), canary.text)
    return planted


def read_canaries(world_root: str | Path) -> list[Canary]:
    """The canaries planted in the world built in ``world_root`` (``canaries.jsonl``; none if it has none)."""
    path = Path(world_root) / "canaries.jsonl"
    return [Canary.from_dict(row) for row in read_jsonl(path)] if path.exists() else []
