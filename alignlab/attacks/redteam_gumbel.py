"""Gradient-based red teaming with Gumbel-softmax (Wichers, Denison & Beirami 2024, "Gradient-Based Language Model
Red Teaming"), in PyTorch on any Hugging Face causal LM.

The red-team tokens appended to a request are not fixed tokens but distributions: logits θ ∈ R^{L×V}, relaxed into
soft one-hot vectors by Gumbel-softmax, x̃_i = softmax((θ_i + g_i) / τ), g_i ~ Gumbel(0, 1). The target model reads
their embeddings x̃_i·W_E, then *samples* a response of R tokens the same relaxed way (ỹ_t = softmax((z_t + g_t)/τ)
from its own logits z_t, each fed back as ỹ_t·W_E), so the gradient reaches θ through the sampled response. A
differentiable safety classifier scores ỹ; the loss is

    L(θ) = −log p_unsafe(ỹ) + λ · CE(x̃ ‖ p_LM)          CE = −(1/L) Σ_i Σ_v x̃_{i,v} log p_LM(v | x̃_<i)

where the second, "realism" term is the cross-entropy of the soft prompt under a language model (λ = 0: none), so the
prompts found stay likely text. τ is annealed geometrically from ``tau_start`` to ``tau_end``: soft and exploratory
at first, nearly one-hot at the end, where argmax θ is the prompt used.

The classifier (:class:`SafetyClassifier`) takes soft tokens, so it is differentiable by construction: a mean of
learned token embeddings and a small MLP. On the toy world it is trained on the world's own safe and unsafe answers
(``safety_train.jsonl``: :func:`world_safety_texts`).

Example::

    >>> clf, acc = train_safety_classifier(tok, texts, labels)                       # doctest: +SKIP
    >>> out = gumbel_red_team(model, tok, clf, "Tell me how to rob a bank", GumbelConfig(steps=50))  # doctest: +SKIP
    >>> out.prompts[out.best], out.p_unsafe[-1]                                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from alignlab.attacks.gcg import render_around_suffix
from alignlab.errors import AttackError


class SafetyClassifier(nn.Module):
    """p(unsafe) of a response given as soft tokens [B, R, V]: mean of learned token embeddings → MLP → a logit [B]."""

    def __init__(self, vocab_size: int, dim: int = 32):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(vocab_size, dim) * 0.1)
        self.head = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))

    def forward(self, soft_tokens: torch.Tensor) -> torch.Tensor:
        return self.head((soft_tokens @ self.embed).mean(1)).squeeze(-1)


def world_safety_texts(seed: int = 0, size: str = "small") -> tuple[list[str], list[int]]:
    """The world's answers from its safety pairs and whether each is unsafe (1) or safe (0)."""
    from alignlab.world.build import build_world
    from alignlab.world.datasets import read_jsonl

    rows = read_jsonl(build_world(seed=seed, size=size, verbose=False).datasets["safety_train"])
    texts, labels = [], []
    for row in rows:
        for k in (0, 1):
            texts.append(row[f"response_{k}"])
            labels.append(0 if row[f"is_response_{k}_safe"] else 1)
    return texts, labels


def train_safety_classifier(tokenizer, texts: Sequence[str], labels: Sequence[int], *, vocab_size: int | None = None,
                            epochs: int = 30, lr: float = 0.03, seed: int = 0, held_out: float = 0.2
                            ) -> tuple[SafetyClassifier, float]:
    """Train on the first part of (texts, labels) with binary cross-entropy; returns the classifier and its accuracy
    on the last ``held_out`` fraction."""
    if len(set(labels)) < 2:
        raise AttackError("the safety classifier needs both safe and unsafe examples")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    order = torch.randperm(len(texts), generator=generator).tolist()
    cut = int(len(order) * (1 - held_out))
    ids = [torch.tensor(tokenizer(texts[i], add_special_tokens=False)["input_ids"] or [0]) for i in order]
    y = torch.tensor([float(labels[i]) for i in order])
    clf = SafetyClassifier(vocab_size or len(tokenizer))

    def logits(rows: range) -> torch.Tensor:  # hard tokens: one-hot @ embed is a row lookup, so embedding_bag
        flat = torch.cat([ids[i] for i in rows])
        offsets = torch.tensor([0] + [len(ids[i]) for i in rows][:-1]).cumsum(0)
        return clf.head(nn.functional.embedding_bag(flat, clf.embed, offsets, mode="mean")).squeeze(-1)

    optimiser = torch.optim.Adam(clf.parameters(), lr=lr)
    for _ in range(epochs):
        for lo in range(0, cut, 32):
            batch = range(lo, min(lo + 32, cut))
            loss = nn.functional.binary_cross_entropy_with_logits(logits(batch), y[lo:lo + len(batch)])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        tests = range(cut, len(order))
        right = int(((logits(tests) > 0) == y[cut:].bool()).sum()) if len(tests) else 0
    return clf.eval(), right / max(1, len(tests))


@dataclass
class GumbelConfig:
    """Gumbel-softmax red teaming's settings."""

    prompt_tokens: int = 8
    """red-team tokens appended to the request"""
    response_tokens: int = 8
    """response tokens sampled (relaxed) from the target for the classifier"""
    steps: int = 100
    """optimisation steps"""
    batch: int = 4
    """red-team prompts optimised at once (independent θ)"""
    lr: float = 0.1
    """Adam's learning rate on θ"""
    tau_start: float = 2.0
    """Gumbel-softmax temperature at the first step"""
    tau_end: float = 0.1
    """temperature at the last step (annealed geometrically)"""
    realism_weight: float = 0.1
    """λ: weight of the prompt's cross-entropy under the language model (0: no realism term)"""
    seed: int = 0
    """seed of θ's initialisation and the Gumbel noise"""

    def __post_init__(self) -> None:
        if min(self.prompt_tokens, self.response_tokens, self.steps, self.batch) < 1:
            raise AttackError("redteam: prompt_tokens, response_tokens, steps and batch must be >= 1")
        if not 0 < self.tau_end <= self.tau_start:
            raise AttackError("redteam: need 0 < tau_end <= tau_start")


@dataclass
class RedTeamResult:
    prompts: list[str]
    """argmax θ of each batch row, decoded"""
    best: int
    """row whose last-step p_unsafe was highest"""
    p_unsafe: list[float] = field(default_factory=list)
    """mean classifier p_unsafe over the batch per step"""
    realism: list[float] = field(default_factory=list)
    """mean realism cross-entropy per step"""


def gumbel(shape: torch.Size, generator: torch.Generator, device) -> torch.Tensor:
    """Standard Gumbel noise −log(−log U)."""
    u = torch.rand(shape, generator=generator, device=device).clamp_(1e-10, 1 - 1e-10)
    return -torch.log(-torch.log(u))


def gumbel_red_team(model: nn.Module, tokenizer, classifier: SafetyClassifier, request: str, config: GumbelConfig,
                    *, realism_model: nn.Module | None = None) -> RedTeamResult:
    """Optimise ``config.batch`` red-team token strings appended to ``request`` (the module docstring's L(θ))."""
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    before, after = render_around_suffix(tokenizer, [{"role": "user", "content": request}])
    W = model.get_input_embeddings().weight  # [V, d]
    vocab = classifier.embed.shape[0]
    W = W[:vocab]
    encode = lambda text: torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"], device=device)  # noqa: E731
    before_e, after_e = W[encode(before)].detach(), W[encode(after)].detach()  # [P, d], [A, d]
    banned = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=device)
    theta = (0.01 * torch.randn(config.batch, config.prompt_tokens, vocab, generator=generator, device=device))
    theta[..., banned] = -1e4  # special tokens are never part of a prompt
    theta.requires_grad_()
    optimiser = torch.optim.Adam([theta], lr=config.lr)
    lm = realism_model or model
    result = RedTeamResult(prompts=[], best=0)
    b = config.batch
    for step in range(config.steps):
        tau = config.tau_start * (config.tau_end / config.tau_start) ** (step / max(1, config.steps - 1))
        soft_prompt = ((theta + gumbel(theta.shape, generator, device)) / tau).softmax(-1)  # [B, L, V]
        prompt_e = soft_prompt @ W  # [B, L, d]
        seq = torch.cat([before_e.expand(b, -1, -1), prompt_e, after_e.expand(b, -1, -1)], dim=1)
        response = []
        for _ in range(config.response_tokens):  # the target samples its answer, relaxed, token by token
            logits = model(inputs_embeds=seq, logits_to_keep=1).logits[:, -1, :vocab].float()  # [B, V]
            y = ((logits + gumbel(logits.shape, generator, device)) / tau).softmax(-1)
            response.append(y)
            seq = torch.cat([seq, (y.to(W.dtype) @ W)[:, None]], dim=1)
        unsafe_logit = classifier(torch.stack(response, 1))  # [B]
        loss = -nn.functional.logsigmoid(unsafe_logit).mean()
        realism = torch.zeros(())
        if config.realism_weight:
            context = torch.cat([before_e.expand(b, -1, -1), prompt_e[:, :-1]], dim=1)
            lm_logits = lm(inputs_embeds=context, logits_to_keep=config.prompt_tokens).logits[..., :vocab].float()
            realism = -(soft_prompt * lm_logits.log_softmax(-1)).sum(-1).mean()  # CE(x̃ ‖ p_LM), per token
            loss = loss + config.realism_weight * realism
        (theta.grad,) = torch.autograd.grad(loss, theta)  # only θ: the models' own gradients are never touched
        optimiser.step()
        result.p_unsafe.append(float(torch.sigmoid(unsafe_logit.detach()).mean()))
        result.realism.append(float(realism))
    result.prompts = tokenizer.batch_decode(theta.argmax(-1))
    result.best = int(unsafe_logit.argmax())
    return result
