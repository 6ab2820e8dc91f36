"""Records → token ids, with the loss on completion tokens only; collators and length-grouped batches.

The prompt is rendered with the chat template and ``add_generation_prompt=True``; the full conversation
is rendered too, and the completion is *the text the full rendering adds after the prompt's*. Both
pieces are tokenised separately and concatenated, so the prompt/completion boundary is exactly the
one the model sees at generation time (it cannot move, REFERENCES.md "silent tokenisation"). The
template supplies BOS; we never add special tokens a second time.

Example::

    >>> enc = encode_completion(tok, [user("2+2?")], "4")           # doctest: +SKIP
    >>> enc["labels"][: len(enc["prompt_ids"])]                       # doctest: +SKIP
    [-100, -100, ...]  (the prompt tokens are masked)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignlab.core.records import Message
from alignlab.errors import DataError

IGNORE_INDEX = -100

# Used only when a tokenizer has no chat template of its own (base models): plain role-tagged turns.
DEFAULT_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] + '\n\n' }}"
    "{% elif m['role'] == 'user' %}{{ 'User: ' + m['content'] + '\n' }}"
    "{% else %}{{ 'Assistant: ' + m['content'] + eos_token + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def ensure_chat_template(tokenizer) -> None:
    """Give a tokenizer without a chat template alignlab's plain default (saved with the model)."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE


def render_prompt(tokenizer, prompt: list[Message]) -> str:
    """The prompt as the model sees it right before it answers."""
    if not prompt:
        return tokenizer.bos_token or "" if _template_adds_bos(tokenizer) else ""
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def _template_adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token
    if not bos:
        return False
    probe = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    return probe.startswith(bos)


def split_rendering(tokenizer, prompt: list[Message], completion: str) -> tuple[str, str]:
    """(prompt text, completion text) such that their concatenation is the full rendered conversation."""
    prompt_text = render_prompt(tokenizer, prompt)
    if not prompt:
        # Language-modelling text: no template, the whole text is the completion.
        return prompt_text, completion
    full = tokenizer.apply_chat_template(prompt + [{"role": "assistant", "content": completion}], tokenize=False)
    if not full.startswith(prompt_text):
        raise DataError(
            "the chat template renders the prompt differently when a completion follows it, so the "
            "prompt/completion boundary is ambiguous; use a template whose generation prompt is a prefix "
            "of the rendered conversation", field="chat_template")
    return prompt_text, full[len(prompt_text):]


def completion_ids_ending_with_eos(tokenizer, completion_text: str) -> list[int]:
    """A rendered completion's ids, with EOS appended when the template's end of turn has none, so the model
    learns to stop."""
    ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return ids + [eos] if eos is not None and eos not in ids else ids


def encode_completion(tokenizer, prompt: list[Message], completion: str, *, max_length: int = 1024,
                      max_prompt_length: int | None = None) -> dict[str, list[int]]:
    """Token ids and labels for one (prompt, completion); labels are IGNORE_INDEX on prompt tokens.

    Truncation keeps the *end* of a long prompt (the question is usually last) and the *start* of a
    long completion, within ``max_length`` tokens in all. The completion ends with EOS so the model
    learns to stop.
    """
    prompt_text, completion_text = split_rendering(tokenizer, prompt, completion)
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    completion_ids = completion_ids_ending_with_eos(tokenizer, completion_text)
    max_prompt_length = max_prompt_length if max_prompt_length is not None else max_length // 2
    if len(prompt_ids) > max_prompt_length:
        prompt_ids = prompt_ids[-max_prompt_length:]
    completion_ids = completion_ids[: max(0, max_length - len(prompt_ids))]
    return {
        "prompt_ids": prompt_ids,
        "completion_ids": completion_ids,
        "input_ids": prompt_ids + completion_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` have in common (``common_prefix_length([1, 2, 3], [1, 2, 4]) == 2``)."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def pad(sequences: Sequence[Sequence[int]], value: int, length: int | None = None) -> torch.Tensor:
    """Right-pad integer sequences into a [batch, length] tensor."""
    length = length or max(len(s) for s in sequences)
    out = torch.full((len(sequences), length), value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
    return out


@dataclass
class CompletionCollator:
    """Collate encoded completions into ``input_ids``, ``attention_mask``, ``labels`` [batch, seq]."""

    pad_token_id: int
    pad_to_multiple_of: int = 8

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        length = _round_up(max(len(e["input_ids"]) for e in examples), self.pad_to_multiple_of)
        input_ids = pad([e["input_ids"] for e in examples], self.pad_token_id, length)
        return {
            "input_ids": input_ids,
            "attention_mask": pad([[1] * len(e["input_ids"]) for e in examples], 0, length),
            "labels": pad([e["labels"] for e in examples], IGNORE_INDEX, length),
        }


@dataclass
class PairCollator:
    """Collate encoded pairs so chosen and rejected share one forward: rows [chosen..., rejected...].

    Each example holds ``chosen`` and ``rejected`` encodings (from :func:`encode_completion`) and may
    hold ``margin`` and precomputed ``ref_chosen_logp`` / ``ref_rejected_logp``.
    """

    pad_token_id: int
    pad_to_multiple_of: int = 8

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [e["chosen"] for e in examples] + [e["rejected"] for e in examples]
        batch = CompletionCollator(self.pad_token_id, self.pad_to_multiple_of)(rows)
        for key in ("margin", "ref_chosen_logp", "ref_rejected_logp"):
            if key in examples[0]:
                batch[key] = torch.tensor([float(e[key]) for e in examples], dtype=torch.float32)
        return batch


def shared_prefix_batch(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]],
                        prompt_index: Sequence[int], pad_token_id: int, *, width: int | None = None,
                        pad_to_multiple_of: int = 8) -> dict[str, torch.Tensor]:
    """Lay out completions that share prompts so that each prompt goes through the model ONCE.

    Completion i continues ``prompts[prompt_index[i]]``. The forward
    (:func:`alignlab.core.logprobs.shared_prefix_logits`) runs in two passes: the prompts without their last
    token, once each, filling a KV cache; then every completion, preceded by its prompt's last token,
    attending to its own prompt's cached keys and values (with gradients flowing back into them). Each
    completion token sees exactly the context it has in the ordinary one-row-per-completion layout. The
    prompt's last token is repeated per completion so that its logits, which predict the completion's first
    token, come out of the second pass with the others.

    Returns

    - ``prompt_ids``, ``prompt_mask``: [prompts, P − 1] right-padded prompts minus their last token;
    - ``prompt_index``: [n], the prompt row of each completion;
    - ``input_ids``, ``attention_mask``, ``position_ids``: [n, width] rows ``[last prompt token, completion]``,
      right-padded; positions continue the prompt's own (``len(prompt) − 1 + t``);
    - ``labels``: [n, width − 1], the completion tokens (``logits[:, :-1]`` predict them), IGNORE_INDEX after.

    ``width`` defaults to 1 + the longest completion, rounded up to ``pad_to_multiple_of``.

    Example::

        >>> b = shared_prefix_batch([[5, 6, 7]], [[8, 9], [4]], [0, 0], pad_token_id=0, pad_to_multiple_of=1)
        >>> b["prompt_ids"].tolist(), b["input_ids"].tolist(), b["position_ids"].tolist()
        ([[5, 6]], [[7, 8, 9], [7, 4, 0]], [[2, 3, 4], [2, 3, 4]])
        >>> b["labels"].tolist()
        [[8, 9], [4, -100]]
    """
    if len(completions) != len(prompt_index):
        raise ValueError("one prompt_index per completion is needed")
    if any(len(p) < 2 for p in prompts):
        raise ValueError("a shared prefix needs prompts of at least 2 tokens (the last one is repeated per completion)")
    heads = [list(p[:-1]) for p in prompts]
    rows = [[prompts[j][-1], *c] for j, c in zip(prompt_index, completions)]
    width = width or _round_up(max(len(r) for r in rows), pad_to_multiple_of)
    if max(len(r) for r in rows) > width:
        raise ValueError(f"a completion does not fit width={width}")
    head_width = max(len(h) for h in heads)
    offsets = torch.tensor([len(prompts[j]) - 1 for j in prompt_index])  # [n]: position of the prompt's last token
    return {
        "prompt_ids": pad(heads, pad_token_id, head_width),
        "prompt_mask": pad([[1] * len(h) for h in heads], 0, head_width),
        "prompt_index": torch.tensor(list(prompt_index), dtype=torch.long),
        "input_ids": pad(rows, pad_token_id, width),
        "attention_mask": pad([[1] * len(r) for r in rows], 0, width),
        "position_ids": offsets[:, None] + torch.arange(width),
        "labels": pad([list(c) for c in completions], IGNORE_INDEX, width - 1),
    }


def shares_prompts(examples: Sequence[dict[str, Any]], first: str = "chosen", second: str = "rejected") -> bool:
    """True when every example's two encodings have the same prompt ids, of at least 2 tokens."""
    return all(len(e[first]["prompt_ids"]) >= 2 and e[first]["prompt_ids"] == e[second]["prompt_ids"]
               for e in examples)


@dataclass
class SharedPrefixPairCollator:
    """Collate encoded pairs so each prompt is computed once for both answers (:func:`shared_prefix_batch`).

    Same inputs as :class:`PairCollator`; the completion rows are [chosen...; rejected...] as there, plus
    ``margin`` / ``ref_chosen_logp`` / ``ref_rejected_logp`` when the examples hold them. Pairs whose two
    encodings have different prompts cannot share one (use :class:`PairCollator`).
    """

    pad_token_id: int
    pad_to_multiple_of: int = 8

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not shares_prompts(examples):
            raise ValueError("SharedPrefixPairCollator needs pairs whose chosen and rejected share the prompt")
        b = len(examples)
        batch = shared_prefix_batch([e["chosen"]["prompt_ids"] for e in examples],
                                    [e["chosen"]["completion_ids"] for e in examples]
                                    + [e["rejected"]["completion_ids"] for e in examples],
                                    [*range(b), *range(b)], self.pad_token_id,
                                    pad_to_multiple_of=self.pad_to_multiple_of)
        for key in ("margin", "ref_chosen_logp", "ref_rejected_logp"):
            if key in examples[0]:
                batch[key] = torch.tensor([float(e[key]) for e in examples], dtype=torch.float32)
        return batch


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple) if multiple > 1 else n


def pack(examples: list[dict[str, list[int]]], block_size: int) -> list[dict[str, list[int]]]:
    """Concatenate examples (keeping their label masks) and cut into blocks of ``block_size`` tokens.

    Packing removes padding entirely; attention crosses example boundaries inside a block, as in
    ordinary LM pretraining. The last partial block is dropped.
    """
    ids: list[int] = []
    labels: list[int] = []
    for e in examples:
        ids += e["input_ids"]
        labels += e["labels"]
    return [{"input_ids": ids[i:i + block_size], "labels": labels[i:i + block_size]}
            for i in range(0, len(ids) - block_size + 1, block_size)]


def batch_order(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int,
                group_by_length: bool = True, shuffle: bool = True) -> list[list[int]]:
    """Indices for one epoch, cut into batches of ``batch_size`` (a pure function of seed and epoch).

    With ``group_by_length``, indices are shuffled, then sorted by length inside mega-batches of 50
    batches, so each batch holds similar lengths (little padding) while the order stays random. Being a
    pure function of (seed, epoch) is what lets ``--resume`` replay exactly the same batches.
    """
    rng = random.Random(f"{seed}-{epoch}")
    order = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(order)
    if group_by_length:
        mega = batch_size * 50
        order = [i for start in range(0, len(order), mega)
                 for i in sorted(order[start:start + mega], key=lambda j: -lengths[j])]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length and shuffle:
        rng.shuffle(batches)
    return batches
