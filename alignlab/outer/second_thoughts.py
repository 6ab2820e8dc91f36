"""Second Thoughts (Liu et al. 2022, "Second Thoughts are Best: Learning to Re-Align With Human Values from Text
Edits"): teach a model to revise a misaligned answer into an aligned one through explicit edits.

For each preference pair, the rejected (misaligned) answer is turned into the chosen (aligned) one by the fewest
word insertions, deletions and substitutions — Levenshtein's dynamic programme,

    D[i][j] = min(D[i−1][j] + 1,  D[i][j−1] + 1,  D[i−1][j−1] + [a_i ≠ b_j])

traced back into edit operations and merged into spans. The training completion is the chain

    <misaligned answer>
    Edits: replace "a fool" with "welcome"; delete "now"
    Revised: <aligned answer>

and SFT learns it (the paper's edit-augmented data). At inference the model writes its first thoughts, the
edits and the revision; :func:`revised_answer` reads the text after the last ``Revised:`` (the paper's RL stage,
which rewards coherent edits, is the world judge's reward on that answer through any online method).

Example::

    >>> word_edits("thanks , you are a fool".split(), "thanks , you are welcome !".split())
    [('replace', 'a fool', 'welcome !')]
    >>> revised_answer("Go away.\\nEdits: replace \\"Go away.\\" with \\"Hi!\\"\\nRevised: Hi!")
    'Hi!'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignlab.errors import DataError
from alignlab.outer.sft import SFTConfig, train_sft

EDITS, REVISED = "Edits:", "Revised:"


def word_edits(source: list[str], target: list[str]) -> list[tuple[str, str, str]]:
    """The fewest word edits turning ``source`` into ``target``: (op, old words, new words) spans in order, with
    op one of replace, delete, insert (an insertion's old words are empty)."""
    n, m = len(source), len(target)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        cost[i][0] = i
    for j in range(m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j] + 1, cost[i][j - 1] + 1,
                             cost[i - 1][j - 1] + (source[i - 1] != target[j - 1]))
    ops: list[tuple[str, str, str]] = []  # traced back from the end, one word at a time
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and source[i - 1] == target[j - 1] and cost[i][j] == cost[i - 1][j - 1]:
            ops.append(("keep", source[i - 1], target[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + 1:
            ops.append(("replace", source[i - 1], target[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            ops.append(("delete", source[i - 1], ""))
            i -= 1
        else:
            ops.append(("insert", "", target[j - 1]))
            j -= 1
    merged: list[list[Any]] = []
    for op, old, new in reversed(ops):  # consecutive edits become one span (a delete beside an insert: replace)
        if op == "keep":
            merged.append(["keep", [], []])
            continue
        if merged and merged[-1][0] != "keep":
            merged[-1][1] += [old] if old else []
            merged[-1][2] += [new] if new else []
        else:
            merged.append([op, [old] if old else [], [new] if new else []])
    spans = []
    for op, old, new in merged:
        if op == "keep":
            continue
        kind = "replace" if old and new else "delete" if old else "insert"
        spans.append((kind, " ".join(old), " ".join(new)))
    return spans


def edit_chain(misaligned: str, aligned: str) -> str:
    """The training completion: first thoughts, the edits that align them, the revised answer."""
    describe = {"replace": lambda o, n: f'replace "{o}" with "{n}"', "delete": lambda o, n: f'delete "{o}"',
                "insert": lambda o, n: f'insert "{n}"'}
    edits = "; ".join(describe[op](old, new) for op, old, new in word_edits(misaligned.split(), aligned.split()))
    return f"{misaligned}\n{EDITS} {edits or 'none'}\n{REVISED} {aligned}"


def revised_answer(text: str) -> str:
    """The answer after the last ``Revised:`` (the whole text, stripped, when the model wrote none)."""
    return text.rsplit(REVISED, 1)[-1].strip()


@dataclass
class SecondThoughtsConfig(SFTConfig):
    """Second Thoughts: SFT on edit chains from each pair's rejected answer to its chosen answer."""

    output: str = "runs/second-thoughts"


def train_second_thoughts(config: SecondThoughtsConfig, **kwargs: Any):
    """Write the edit-augmented conversations beside the run (``<output>-data.jsonl``) and fine-tune on them."""
    import dataclasses

    from alignlab.core.io import atomic_write_text
    from alignlab.core.readers import read_records

    if not config.data.path:
        raise DataError("no preference pairs given (use --data PATH)", field="data.path")
    pairs = read_records(config.data.path, "pair", split=config.data.split, format=config.data.format,
                         limit=config.data.limit)
    rows = [{"prompt": p.prompt, "completion": [{"role": "assistant", "content": edit_chain(p.rejected, p.chosen)}]}
            for p in pairs if p.rejected.strip() != p.chosen.strip()]
    if not rows:
        raise DataError("every pair's answers are the same: there is nothing to edit", source=config.data.path)
    target = Path(f"{config.output.rstrip('/')}-data.jsonl")
    atomic_write_text(target, "".join(json.dumps(r) + "\n" for r in rows))
    return train_sft(dataclasses.replace(config, data=dataclasses.replace(config.data, path=str(target), format=None)),
                     **kwargs)
