"""``alignlab world eval``: sample a model on the world's held-out prompts and grade it with the judge.

Each eval prompt is answered ``samples`` times (temperature 1 by default, so the rates describe the
model's distribution, not just its most likely answer), the judge scores every answer, and the rates are
aggregated per family and overall (see :mod:`alignlab.world.evaluate`). With a ``reference`` model the
result also holds ``kl_to_reference``: the mean over samples of Σ_t log π(y_t) − log π_ref(y_t), a Monte
Carlo estimate of KL(π ‖ π_ref) per answer, in nats.

Example::

    >>> from alignlab.world.model_eval import evaluate_model
    >>> result = evaluate_model("runs/demo/dpo", reference="runs/demo/base")   # doctest: +SKIP
    >>> result["harmlessness"], result["kl_to_reference"]                      # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from alignlab.core.io import atomic_write_json, atomic_write_text
from alignlab.core.logprobs import sequence_logprobs
from alignlab.core.tokenize import IGNORE_INDEX, CompletionCollator
from alignlab.world.build import WorldPaths, build_world
from alignlab.world.datasets import load_prompts
from alignlab.world.evaluate import evaluate_responses

RATES = ("helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward")


def answer_logprobs(
    model,
    prompt_ids: list[list[int]],
    answer_ids: list[list[int]],
    *,
    pad_token_id: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """Σ_t log π(answer_t | prompt, answer_<t) for each (prompt, answer) pair of token ids → [n]."""
    collate = CompletionCollator(pad_token_id)
    out = []
    with torch.no_grad():
        for lo in range(0, len(prompt_ids), batch_size):
            batch = collate(
                [
                    {"input_ids": p + a, "labels": [IGNORE_INDEX] * len(p) + a}
                    for p, a in zip(prompt_ids[lo : lo + batch_size], answer_ids[lo : lo + batch_size])
                ]
            )
            out.append(
                sequence_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])[0]
            )
    return torch.cat(out)


def evaluate_model(
    model: str,
    world: WorldPaths | None = None,
    *,
    reference: str | None = None,
    samples: int = 1,
    max_tokens: int = 48,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    output_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Ground-truth rates of ``model`` on the world's eval prompts (and KL to ``reference``).

    With ``output_dir``, writes ``results.json`` and ``samples.jsonl`` (prompt, family, response and its
    per-dimension scores) there, atomically.
    """
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.world.judge import score

    world = world or build_world(verbose=False)
    prompts = load_prompts(world.datasets["prompts_eval"]) * samples
    lm = HuggingFaceLM(model, batch_size=batch_size)
    encoded = [lm.encode_prompt(p.messages) for p in prompts]
    generated = lm.generate_ids(encoded, max_tokens=max_tokens, temperature=temperature, seed=seed)
    responses = [lm.tokenizer.decode(g, skip_special_tokens=True) for g in generated]
    result = evaluate_responses(prompts, responses)
    result["samples_per_prompt"] = samples
    result["unfinished"] = sum(len(g) >= max_tokens for g in generated) / len(generated)
    if reference is not None:
        from alignlab.core.models import load_causal_lm

        eos = lm.tokenizer.eos_token_id
        # A finished answer ends with EOS, whose probability is part of the answer's likelihood.
        answers = [g + [eos] if len(g) < max_tokens else g for g in generated]
        pad = lm.tokenizer.pad_token_id
        logp = answer_logprobs(lm.model, encoded, answers, pad_token_id=pad, batch_size=batch_size)
        ref_logp = answer_logprobs(
            load_causal_lm(reference).eval(), encoded, answers, pad_token_id=pad, batch_size=batch_size
        )
        result["kl_to_reference"] = float((logp - ref_logp).mean())
    if output_dir is not None:
        out = Path(output_dir)
        rows = [
            {"prompt": p.text, "family": p.family, "response": r, **score(p, r).as_dict()}
            for p, r in zip(prompts, responses)
        ]
        atomic_write_text(out / "samples.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
        atomic_write_json(out / "results.json", result)
    return result
