"""Typed records: every dataset format is read into one of these few kinds.

A *completion* is always the assistant's final message; the *prompt* is the conversation before it,
as a list of chat messages ``{"role": ..., "content": ...}``. Keeping the prompt as messages (not a
pre-rendered string) lets the tokenizer's chat template render prompt and completion together, so the
prompt/completion boundary cannot move (a classic TRL bug, see REFERENCES.md).

Example::

    >>> from alignlab.core.records import PairRecord, user
    >>> pair = PairRecord(prompt=[user("Capital of Zorbia?")], chosen="Vell.", rejected="Paris.")
    >>> pair.kind
    'pair'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
RecordKind = Literal["prompt", "conversation", "pair", "ranked", "unpaired", "safety_pair"]


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


@dataclass
class PromptRecord:
    """A prompt with no response (for online RL, generation and evaluation)."""

    prompt: list[Message]
    meta: dict[str, Any] = field(default_factory=dict)
    kind: RecordKind = field(default="prompt", init=False)


@dataclass
class ConversationRecord:
    """A demonstration for SFT: the loss covers ``completion`` only, ``prompt`` is context."""

    prompt: list[Message]
    completion: str
    meta: dict[str, Any] = field(default_factory=dict)
    kind: RecordKind = field(default="conversation", init=False)


@dataclass
class PairRecord:
    """A preference pair: ``chosen`` is preferred to ``rejected`` for the same prompt.

    ``margin`` is an optional strength of preference (e.g. a score gap) used by margin losses.
    """

    prompt: list[Message]
    chosen: str
    rejected: str
    margin: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    kind: RecordKind = field(default="pair", init=False)


@dataclass
class RankedRecord:
    """N responses to one prompt with a score each (RRHF, PRO, Stable Alignment). Higher is better."""

    prompt: list[Message]
    responses: list[str]
    scores: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    kind: RecordKind = field(default="ranked", init=False)


@dataclass
class UnpairedRecord:
    """One response labelled desirable (``label=True``) or undesirable (KTO, CRINGE negatives)."""

    prompt: list[Message]
    completion: str
    label: bool
    meta: dict[str, Any] = field(default_factory=dict)
    kind: RecordKind = field(default="unpaired", init=False)


@dataclass
class SafetyPairRecord:
    """Two responses with separate helpfulness and safety preferences (PKU-SafeRLHF, Safe RLHF).

    ``better`` / ``safer`` are indices (0 or 1) into ``responses``; ``is_safe`` holds a per-response
    safety label, which the cost model's classification term needs.
    """

    prompt: list[Message]
    responses: tuple[str, str]
    better: int
    safer: int
    is_safe: tuple[bool, bool]
    meta: dict[str, Any] = field(default_factory=dict)
    kind: RecordKind = field(default="safety_pair", init=False)


Record = PromptRecord | ConversationRecord | PairRecord | RankedRecord | UnpairedRecord | SafetyPairRecord
