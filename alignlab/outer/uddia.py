"""UDDIA-style inference-time adaptive optimisation: detoxify and debias a model *while it generates*, by tuning a
few bias terms on an attribute model's gradient (Yang et al. 2022, "Unified Detoxifying and Debiasing in Language
Generation via Inference-time Adaptive Optimization").

The pieces, as in the paper, at toy scale:

- **Attribute model**: a linear probe on the LM's own last hidden states, averaged over the answer's tokens
  (PPLM's discriminator shape), ``p(undesired | x, y) = σ(w · mean_t h_t + b)``; fitted by logistic regression on
  labelled answers (:func:`fit_attribute_probe`; on the toy world: the judge's insult and stereotype labels).
- **What is tuned**: one bias vector per row (answer) added to the residual stream after each of the last
  ``layers`` decoder layers. UDDIA tunes the model's bias terms; a Llama has none, so these are they. Every answer
  in the batch has its own and starts at zero (the unchanged model).
- **When**: decoding runs in segments of ``segment`` tokens through the one generator. After a segment, the
  probe scores each answer so far *under the unchanged model* (zero biases); only answers above ``threshold``
  are touched (UDDIA's adaptive intervention: clean text costs nothing extra). The gate must not read the tuned
  model: the biases are added to exactly the states the probe reads, so the optimisation below can lower the
  probe's read-out by moving the biases along the probe's weight without changing a token, and a gate that
  read the biased states would then pass text the unchanged model's probe still flags. The biases serve only
  decoding and the gradient. For flagged answers, ``steps`` Adam steps on

      L(b) = −log(1 − p(undesired | x, y_≤t; b)) + λ · mean_t KL(π_b(· | x, y_<t) ‖ π_0(· | x, y_<t))

  (the fluency term keeps the tuned model near the original on the answer so far), then the segment is rolled
  back and **redone** with the new biases, at most ``max_redo`` times per segment. The biases carry over to the
  rest of the answer. (``lr=0`` keeps the biases at zero: a redo is then a plain resample, the control that
  separates rejection-and-resampling from the tuning.)

Where this differs from the paper: UDDIA's debiasing term equalises the model's behaviour across demographic
groups; here bias is one more positive label of the same classifier (``undesired`` = toxic or stereotyping),
and the tuned layers are fixed (the last ``layers``), not chosen adaptively per step as UDDIA does.

Example::

    >>> cfg = UDDIAConfig(threshold=0.5, segment=8)                                      # doctest: +SKIP
    >>> out = uddia_generate(model, tok, prompts, probe, cfg)                            # doctest: +SKIP
    >>> out.texts, out.interventions                                                    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from alignlab.core.generation import (
    GenerationConfig,
    GenerationOutput,
    cut_at_stop,
    encode_prompts,
    eos_token_ids,
    generate,
    left_pad,
    left_padded_positions,
)
from alignlab.errors import ConfigError, ModelError
from alignlab.interpret.probes import LinearProbe, fit_probe

# -- the attribute model -------------------------------------------------------------------------------------


def answer_states(model: nn.Module, prompt_ids: list[list[int]], answer_ids: list[list[int]]
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One forward of [prompt, answer] rows (left-padded): (each answer's mean last hidden state [n, d], the
    logits that predict each answer token [n, A, vocab], the answer mask [n, A]). Differentiable (no no_grad)."""
    device = next(model.parameters()).device
    pad = 0
    ids, mask = left_pad([p + a for p, a in zip(prompt_ids, answer_ids)], pad)
    ids, mask = ids.to(device), mask.to(device)
    width = max(len(a) for a in answer_ids)
    out = model(input_ids=ids, attention_mask=mask, position_ids=left_padded_positions(mask),
                output_hidden_states=True, use_cache=False, logits_to_keep=width + 1)
    answer_mask = torch.zeros(len(ids), width, device=device)
    for i, a in enumerate(answer_ids):
        answer_mask[i, width - len(a):] = 1.0  # left padding: each answer ends at the last column
    hidden = out.hidden_states[-1][:, -width:].float()
    pooled = (hidden * answer_mask[..., None]).sum(1) / answer_mask.sum(1, keepdim=True).clamp(min=1)
    return pooled, out.logits[:, :-1].float(), answer_mask


def attribute_logits(probe: LinearProbe, pooled: torch.Tensor) -> torch.Tensor:
    """The probe's logit of 'undesired' for pooled answer states [n, d] -> [n] (differentiable in ``pooled``)."""
    return pooled @ probe.weight.to(pooled.device) + probe.bias


def fit_attribute_probe(model: nn.Module, tokenizer, rows: list[dict[str, Any]], *, batch_size: int = 32,
                        l2: float = 1e-2) -> LinearProbe:
    """Logistic regression of ``label`` (1 = undesired) on the model's mean answer state, for rows
    ``{"prompt": messages, "answer": text, "label": 0/1}``."""
    prompts = encode_prompts(tokenizer, [r["prompt"] for r in rows])
    answers = [tokenizer(r["answer"], add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
               for r in rows]
    with torch.no_grad():
        pooled = torch.cat([answer_states(model, prompts[lo:lo + batch_size], answers[lo:lo + batch_size])[0].cpu()
                            for lo in range(0, len(rows), batch_size)])
    return fit_probe(pooled, torch.tensor([float(r["label"]) for r in rows]), l2=l2)


# -- the tuned bias terms ------------------------------------------------------------------------------------


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a transformers causal LM (``model.model.layers`` for Llama-style models)."""
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ModelError(f"UDDIA needs a model with decoder layers at model.model.layers; {type(model).__name__} "
                         "has none")
    return layers


@contextlib.contextmanager
def residual_biases(model: nn.Module, biases: torch.Tensor) -> Iterator[None]:
    """Add ``biases`` [rows, L, d] to the residual stream after each of the last L decoder layers (row i of the
    batch gets ``biases[i]``); the hooks are removed on exit."""
    layers = list(decoder_layers(model))[-biases.shape[1]:]

    def hook(index: int):
        def add(_module, _inputs, output):
            if isinstance(output, tuple):
                return (output[0] + biases[:, index, None, :].to(output[0].dtype), *output[1:])
            return output + biases[:, index, None, :].to(output.dtype)
        return add

    handles = [layer.register_forward_hook(hook(i)) for i, layer in enumerate(layers)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def uddia_loss(attr_logits: torch.Tensor, logits: torch.Tensor, base_logits: torch.Tensor, mask: torch.Tensor,
               kl_weight: float) -> torch.Tensor:
    """Per row: ``−log(1 − σ(attr)) + λ · mean over answer positions of KL(π_b ‖ π_0)``.

    ``attr_logits`` [n]; ``logits``/``base_logits`` [n, A, vocab] with and without the biases; ``mask`` [n, A]."""
    logp, base_logp = logits.log_softmax(-1), base_logits.log_softmax(-1)
    kl = (logp.exp() * (logp - base_logp)).sum(-1)  # [n, A]
    mean_kl = (kl * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return nn.functional.softplus(attr_logits) + kl_weight * mean_kl  # softplus(a) = −log(1 − σ(a))


# -- decoding ------------------------------------------------------------------------------------------------


@dataclass
class UDDIAConfig:
    """Inference-time adaptive optimisation of bias terms against an attribute model."""

    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(max_new_tokens=48))
    """how tokens are sampled (max_new_tokens, temperature, seed ...)"""
    layers: int = 2
    """the last N decoder layers get a tuned bias vector on their output"""
    segment: int = 8
    """tokens decoded between two checks of the attribute model"""
    threshold: float = 0.5
    """an answer whose attribute probability exceeds this is optimised and its last segment redone"""
    steps: int = 3
    """Adam steps on the biases per intervention"""
    lr: float = 0.1
    """Adam learning rate of the biases"""
    kl_weight: float = 0.1
    """λ: weight of the KL to the unchanged model on the answer so far (fluency)"""
    max_redo: int = 1
    """times one segment may be rolled back and regenerated"""

    def __post_init__(self) -> None:
        if self.layers < 1 or self.segment < 1 or self.steps < 0 or self.max_redo < 0:
            raise ConfigError("UDDIA needs layers >= 1, segment >= 1, steps >= 0 and max_redo >= 0")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"UDDIA's threshold is a probability in [0, 1], got {self.threshold}")


@dataclass
class UDDIAOutput(GenerationOutput):
    """The generator's output plus what the optimisation did."""

    interventions: int = 0
    """(answer, segment) pairs whose biases were optimised"""
    redos: int = 0
    """segments rolled back and regenerated"""
    attribute: list[float] = field(default_factory=list)
    """each answer's final attribute probability under the unchanged model (zero biases)"""


def _optimise(model: nn.Module, probe: LinearProbe, biases: torch.Tensor, prompts: list[list[int]],
              answers: list[list[int]], config: UDDIAConfig) -> torch.Tensor:
    """``config.steps`` Adam steps on the rows' biases [rows, L, d]; returns the new biases."""
    with torch.no_grad(), residual_biases(model, torch.zeros_like(biases)):
        _, base_logits, _ = answer_states(model, prompts, answers)
    tuned = biases.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([tuned], lr=config.lr)
    for _ in range(config.steps):
        with residual_biases(model, tuned):
            pooled, logits, mask = answer_states(model, prompts, answers)
        loss = uddia_loss(attribute_logits(probe, pooled), logits, base_logits, mask, config.kl_weight).sum()
        tuned.grad, = torch.autograd.grad(loss, [tuned])  # the model's own weights get no gradient
        optimiser.step()
    return tuned.detach()


def _scores(model: nn.Module, probe: LinearProbe, prompts: list[list[int]], answers: list[list[int]]
            ) -> list[float]:
    """The probe's probability of 'undesired' for each answer, read from the unchanged model (no biases hooked)."""
    with torch.no_grad():
        return torch.sigmoid(attribute_logits(probe, answer_states(model, prompts, answers)[0])).tolist()


def uddia_generate(model: nn.Module, tokenizer, prompts: list, probe: LinearProbe, config: UDDIAConfig
                   ) -> UDDIAOutput:
    """Complete each prompt (chat messages or token ids) while tuning per-answer bias terms against ``probe``.

    Segments are decoded by :func:`~alignlab.core.generation.generate` (one call per segment for every answer
    still running, the biases hooked in), so sampling, EOS and stop strings behave as in plain decoding; with
    ``threshold=1`` nothing is ever optimised and the answers are the plain sampler's, segment by segment."""
    gen = config.generation
    if gen.backend != "hf":
        raise ConfigError("UDDIA decodes with the hf backend (it tunes the model's own activations)")
    as_ids = all(p and isinstance(p[0], int) for p in prompts)
    prompt_ids = [list(p) for p in prompts] if as_ids else encode_prompts(tokenizer, prompts)
    n, device = len(prompt_ids), next(model.parameters()).device
    eos = eos_token_ids(model, tokenizer)
    biases = torch.zeros(n, config.layers, model.config.hidden_size, device=device)
    answers: list[list[int]] = [[] for _ in range(n)]
    finished = [False] * n
    interventions = redos = calls = 0
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    try:
        while active := [i for i in range(n) if not finished[i] and len(answers[i]) < gen.max_new_tokens]:
            length = min(config.segment, gen.max_new_tokens - min(len(answers[i]) for i in active))
            redo_left = {i: config.max_redo for i in active}
            rows = active
            while rows:
                segment_config = replace(gen, max_new_tokens=length, batch_size=len(rows), shared_prefill=False,
                                         stop=[], seed=None if gen.seed is None else gen.seed + calls)
                calls += 1
                with residual_biases(model, biases[rows]):
                    out = generate(model, tokenizer, [prompt_ids[i] + answers[i] for i in rows], segment_config)
                drafts = {i: answers[i] + c[:gen.max_new_tokens - len(answers[i])]
                          for i, c in zip(rows, out.completion_ids)}
                ended = {i: bool(drafts[i]) and drafts[i][-1] in eos for i in rows}
                scores = _scores(model, probe, [prompt_ids[i] for i in rows], [drafts[i] for i in rows])
                flagged = [i for i, s in zip(rows, scores) if s > config.threshold and redo_left[i] > 0
                           and config.steps > 0]
                for i in rows:
                    if i not in flagged:  # keep this segment
                        answers[i], finished[i] = drafts[i], ended[i]
                        finished[i] |= _wrote_stop(tokenizer, answers[i], gen.stop)
                if flagged:
                    biases[flagged] = _optimise(model, probe, biases[flagged], [prompt_ids[i] for i in flagged],
                                                [drafts[i] for i in flagged], config)
                    interventions += len(flagged)
                    redos += len(flagged)
                    for i in flagged:
                        redo_left[i] -= 1
                rows = flagged  # roll back: the flagged answers redo this segment with their new biases
        attribute = _scores(model, probe, prompt_ids, [a or [min(eos)] for a in answers])
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    texts = [cut_at_stop(t, gen.stop) for t in tokenizer.batch_decode(answers, skip_special_tokens=True)]
    return UDDIAOutput(prompt_ids=prompt_ids, completion_ids=answers, texts=texts, finished=finished, seconds=seconds,
                       interventions=interventions, redos=redos, attribute=attribute)


def _wrote_stop(tokenizer, answer: list[int], stop: list[str]) -> bool:
    return bool(stop) and any(s in tokenizer.decode(answer, skip_special_tokens=True) for s in stop)
