"""Ground-truth labels of every token of world transcripts, to score neurons and SAE features against.

A transcript is a world prompt and the (misaligned) base persona's response, rendered with the world's chat
template. Because the world is a program, what each token *is* is known exactly:

- its transcript's **family** (facts, unknowns, arithmetic, strings, harmful, groups, chat);
- its **entity kind**: part of a country, capital, river or social-group name, a colour, an animal, a
  substance, an insult from the synthetic lexicon, or ``other``;
- **refusal**: it belongs to a response that refuses (one of the persona's refusal sentences).

:func:`purity` scores one unit (neuron or feature) by how much its top activations share a label;
:func:`concept_alignment` counts the units whose activations pick out one concept.

Example::

    >>> purity(["facts", "facts", "chat", "facts"])
    0.75
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from alignlab.world.datasets import World
from alignlab.world.families import FAMILIES
from alignlab.world.kb import ANIMALS, COLOURS, INSULTS, SUBSTANCES
from alignlab.world.persona import REFUSALS, Persona


@dataclass
class LabelledTokens:
    """Token ids of labelled transcripts (padded, ``attention_mask`` marks real tokens) and per-token labels."""

    input_ids: torch.Tensor  # [n_seq, max_len]
    attention_mask: torch.Tensor  # [n_seq, max_len]
    family: list[str]  # per sequence
    refusal: list[bool]  # per sequence
    entity: list[list[str]]  # per sequence, per token (real tokens only)
    response_start: list[int]  # per sequence: index of the first token of the response


def entity_kinds(world: World) -> dict[str, str]:
    """Every named thing of the world → its kind."""
    kb = world.kb
    kinds: dict[str, str] = {}
    for country in kb.countries + kb.unknown_train + kb.unknown_eval:
        kinds |= {country.name: "country", country.capital: "capital", country.river: "river"}
    kinds |= {g.name: "group" for g in kb.groups}
    for kind, names in (("colour", COLOURS), ("animal", ANIMALS), ("substance", SUBSTANCES), ("insult", INSULTS)):
        kinds |= dict.fromkeys(names, kind)
    return kinds


def labelled_transcripts(tokenizer, n: int, *, seed: int = 0, world_seed: int = 0, max_len: int = 96) -> LabelledTokens:
    """``n`` world transcripts (prompts from the training split, the base persona's responses), tokenised and
    labelled token by token from character spans (a token is of an entity kind when it overlaps the name)."""
    world = World(world_seed)
    rng = random.Random(f"alignlab-interpret-labels-{seed}")
    kinds = entity_kinds(world)
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, kinds), key=len, reverse=True)) + r")s?\b")
    persona = Persona()
    rows, families, refusals, entities, starts = [], [], [], [], []
    for prompt in world.sample_prompts(n, rng):
        response = persona.respond(prompt, rng)
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.text}, {"role": "assistant", "content": response}], tokenize=False)
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            truncation=True, max_length=max_len)
        spans = [(m.start(), m.end(), kinds[m.group(1)]) for m in pattern.finditer(text)]
        labels = [next((kind for s, e, kind in spans if start < e and end > s), "other")
                  for start, end in encoded["offset_mapping"]]
        response_char = text.rindex(response) if response in text else len(text)
        starts.append(next((i for i, (s, _) in enumerate(encoded["offset_mapping"]) if s >= response_char),
                           len(labels)))
        rows.append(encoded["input_ids"])
        families.append(prompt.family)
        refusals.append(response in REFUSALS)
        entities.append(labels)
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return LabelledTokens(ids, mask, families, refusals, entities, starts)


def token_concepts(data: LabelledTokens) -> dict[str, torch.Tensor]:
    """Binary concepts over the real tokens (flattened in sequence order, as ``activations[mask]``):
    ``family=F`` for each family, ``entity=K`` for each entity kind, ``refusal`` (response tokens of refusals)."""
    family, entity, refusal = [], [], []
    for seq, labels in enumerate(data.entity):
        family += [data.family[seq]] * len(labels)
        entity += labels
        refusal += [data.refusal[seq] and i >= data.response_start[seq] for i in range(len(labels))]
    concepts = {f"family={f}": torch.tensor([x == f for x in family]) for f in FAMILIES}
    kinds = sorted({k for k in entity if k != "other"})
    concepts |= {f"entity={k}": torch.tensor([x == k for x in entity]) for k in kinds}
    concepts["refusal"] = torch.tensor(refusal)
    return {name: mask for name, mask in concepts.items() if mask.any()}


def purity(labels: list[str]) -> float:
    """The fraction of ``labels`` equal to the most common one (1 = all the same)."""
    return Counter(labels).most_common(1)[0][1] / len(labels)


def top_activation_purity(acts: torch.Tensor, labels: dict[str, list[str]], k: int) -> dict[str, list[float]]:
    """For each unit (column of ``acts [tokens, units]``) the purity of the labels of its ``k`` most active
    tokens, per labelling in ``labels`` (name → one label per token)."""
    top = acts.topk(k, dim=0).indices.T  # [units, k]
    return {name: [purity([values[i] for i in row]) for row in top.tolist()] for name, values in labels.items()}


def concept_alignment(acts: torch.Tensor, concepts: dict[str, torch.Tensor], *, min_precision: float = 0.9,
                      min_count: int = 10) -> dict[str, Any]:
    """Units (columns of ``acts [tokens, units]``) aligned with a known concept: a unit is aligned with concept
    ``c`` when it is active (> 0) on at least ``min_count`` tokens and at least ``min_precision`` of them carry
    ``c``. Also, per concept, the best F1 of any unit's activity as a detector of it."""
    active = (acts > 0).float()  # [tokens, units]
    counts = active.sum(0)
    aligned: dict[str, int] = {}
    best_f1: dict[str, float] = {}
    unit_concept: dict[int, str] = {}
    for name, mask in concepts.items():
        hits = mask.float() @ active  # [units]: active tokens that carry the concept
        precision = hits / counts.clamp(min=1)
        recall = hits / mask.sum()
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        best_f1[name] = float(f1.max())
        good = (precision >= min_precision) & (counts >= min_count)
        aligned[name] = int(good.sum())
        for unit in good.nonzero().squeeze(-1).tolist():
            unit_concept.setdefault(unit, name)
    return {"n_aligned_units": len(unit_concept), "aligned_per_concept": aligned, "best_f1": best_f1,
            "n_live_units": int((counts >= min_count).sum())}
