"""``alignlab world eval``: sample a model on the world's held-out prompts and grade it with the judge.

Each eval prompt is answered ``samples`` times (temperature 1 by default, so the rates describe the
model's distribution, not just its most likely answer), the judge scores every answer, and the rates are
aggregated per family and overall (see :mod:`alignlab.world.evaluate`). With a ``reference`` model the
result also holds ``kl_to_reference``: the mean over samples of Σ_t log π(y_t) − log π_ref(y_t), a Monte
Carlo estimate of KL(π ‖ π_ref) per answer, in nats. :func:`sample_answers` and :func:`kl_estimate` are the
one protocol: ``alignlab demo`` and both benches evaluate through them.

Example::

    >>> from alignlab.world.model_eval import evaluate_model
    >>> result = evaluate_model("runs/demo/dpo", reference="runs/demo/base")   # doctest: +SKIP
    >>> result["harmlessness"], result["kl_to_reference"]                      # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignlab.core.generation import GenerationOutput
from alignlab.core.io import atomic_write_json, atomic_write_text
from alignlab.core.logprobs import sequence_logprobs
from alignlab.core.tokenize import IGNORE_INDEX, CompletionCollator
from alignlab.world.build import WorldPaths, build_world
from alignlab.world.datasets import load_prompts
from alignlab.world.evaluate import evaluate_responses

RATES = ("helpfulness", "honesty", "harmlessness", "toxicity", "bias", "true_reward")
SKILL_MAX_TOKENS = 96  # a six-step worked solution, or a revised answer, is longer than a plain answer


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


@dataclass
class SampledAnswers:
    """The world's evaluation protocol's answers: each eval prompt answered ``samples`` times."""

    prompts: list[Any]
    """the eval prompts, the whole list repeated ``samples`` times (answer k is to prompt k mod n_prompts)"""
    prompt_ids: list[list[int]]
    """what the model was given for each answer"""
    generated: GenerationOutput
    """the generator's output: completion ids (EOS kept when the answer finished), finished flags, texts"""
    answers: list[str]
    """the answers the judge grades (``read`` applied to each text)"""

    @property
    def unfinished(self) -> float:
        """Share of answers cut at the length cap (no EOS)."""
        return 1.0 - sum(self.generated.finished) / len(self.generated.finished)


def sample_answers(lm, prompts: list[Any], *, samples: int, max_tokens: int, temperature: float, seed: int,
                   prompt_ids: Callable[[list[dict[str, str]]], list[int]] | None = None,
                   read: Callable[[str], str] | None = None) -> SampledAnswers:
    """Answer every prompt ``samples`` times with ``lm`` (a :class:`~alignlab.evaluate.lm.HuggingFaceLM`)
    through the one generator. ``prompt_ids`` renders a prompt's messages (default: the chat template);
    ``read`` turns a generated text into the answer the judge grades (default: as generated)."""
    prompts = list(prompts) * samples
    encode = prompt_ids or lm.encode_prompt
    encoded = [encode(p.messages) for p in prompts]
    generated = lm.complete(encoded, max_tokens=max_tokens, temperature=temperature, seed=seed)
    answers = [read(t) for t in generated.texts] if read else list(generated.texts)
    return SampledAnswers(prompts, encoded, generated, answers)


def kl_estimate(model, reference, sampled: SampledAnswers, *, pad_token_id: int,
                reference_prompt_ids: list[list[int]] | None = None, batch_size: int = 64) -> float:
    """Mean over the sampled answers of Σ_t log π(y_t) − log π_ref(y_t): a Monte Carlo estimate of
    KL(π ‖ π_ref) per answer, in nats. A finished answer's EOS is part of its likelihood. The reference sees
    ``reference_prompt_ids`` when given (e.g. the plain prompt where the model saw a conditioned one)."""
    answers = sampled.generated.completion_ids
    logp = answer_logprobs(model, sampled.prompt_ids, answers, pad_token_id=pad_token_id, batch_size=batch_size)
    ref_logp = answer_logprobs(reference, reference_prompt_ids or sampled.prompt_ids, answers,
                               pad_token_id=pad_token_id, batch_size=batch_size)
    return float((logp - ref_logp).mean())


def evaluate_skills(lm, items: list[Any], *, samples: int = 1, max_tokens: int = SKILL_MAX_TOKENS,
                    temperature: float = 1.0, seed: int = 0) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Answer every skill item (:mod:`alignlab.world.skills`; pairwise ones in both orders) ``samples`` times with
    ``lm`` through :func:`sample_answers`, and grade the outputs. Returns the per-skill summary and one row per output."""
    from alignlab.world.skills.evaluate import grade_output, summarize, with_both_orders

    sampled = sample_answers(lm, with_both_orders(items), samples=samples, max_tokens=max_tokens,
                             temperature=temperature, seed=seed)
    rows = [{"skill": i.skill, "prompt": i.user, "output": o, "truth": i.target, **grade_output(i, o)}
            for i, o in zip(sampled.prompts, sampled.answers)]
    return summarize(sampled.prompts, sampled.answers), rows


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
    per-dimension scores) there, atomically. A world with skills (size ``oversight``) also has its skills
    evaluated (``result["skills"]``, see :mod:`alignlab.world.skills.evaluate`; ``skills_samples.jsonl``).
    """
    from alignlab.evaluate.lm import HuggingFaceLM
    from alignlab.world.judge import score

    world = world or build_world(verbose=False)
    lm = HuggingFaceLM(model, batch_size=batch_size)
    sampled = sample_answers(lm, load_prompts(world.datasets["prompts_eval"]), samples=samples,
                             max_tokens=max_tokens, temperature=temperature, seed=seed)
    prompts, responses = sampled.prompts, sampled.answers
    result = evaluate_responses(prompts, responses)
    result["samples_per_prompt"] = samples
    result["unfinished"] = sampled.unfinished
    if reference is not None:
        from alignlab.core.models import load_causal_lm

        result["kl_to_reference"] = kl_estimate(lm.model, load_causal_lm(reference).eval(), sampled,
                                                pad_token_id=lm.tokenizer.pad_token_id, batch_size=batch_size)
    skill_rows = None
    if "skills_eval" in world.datasets:  # the oversight world's skills (alignlab.world.skills)
        from alignlab.world.skills.evaluate import load_items

        result["skills"], skill_rows = evaluate_skills(lm, load_items(world.datasets["skills_eval"]), samples=samples,
                                                       temperature=temperature, seed=seed)
    if output_dir is not None:
        out = Path(output_dir)
        if skill_rows is not None:
            atomic_write_text(out / "skills_samples.jsonl", "".join(json.dumps(row) + "\n" for row in skill_rows))
        rows = [
            {"prompt": p.text, "family": p.family, "response": r, **score(p, r).as_dict()}
            for p, r in zip(prompts, responses)
        ]
        atomic_write_text(out / "samples.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
        atomic_write_json(out / "results.json", result)
    return result
