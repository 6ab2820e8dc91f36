"""Logit lens (nostalgebraist 2020): read every layer's residual stream through the model's own final norm
and unembedding, as if the network stopped there, to see when the prediction forms.

Layer ``L`` of the lens is ``blocks.L.hook_resid_pre``; the last entry is the final residual
(``blocks.{n-1}.hook_resid_post``), whose lens equals the model's logits (up to Gemma 2's final logit
soft-capping, applied here too).

Example:
    >>> import torch
    >>> from transformers import LlamaConfig, LlamaForCausalLM
    >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64,
    ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)).eval()
    >>> with torch.no_grad():
    ...     lens = logit_lens(model, torch.tensor([[1, 5, 7]]))
    >>> tuple(lens.shape)  # [layers + 1, batch, positions, vocab] log-probabilities
    (3, 1, 3, 40)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from alignlab.interpret.hooks import model_family, n_layers, run_with_cache, submodule


def unembed(model: nn.Module, residual: Tensor) -> Tensor:
    """Logits of residual-stream vectors ``[..., d_model]`` through the final norm and the unembedding."""
    family = model_family(model)
    logits = submodule(model, family.unembed)(submodule(model, family.final_norm)(residual))
    softcap = getattr(model.config, "final_logit_softcapping", None)
    return logits if softcap is None else torch.tanh(logits / softcap) * softcap


def logit_lens(model: nn.Module, input_ids: Tensor, *, positions: Sequence[int] | None = None,
               **forward_kwargs) -> Tensor:
    """``[layers + 1, b, p, vocab]`` log-probabilities of the next token read from each layer's residual
    (``positions`` restricts ``p``)."""
    layers = n_layers(model)
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(layers)]
    names.append(f"blocks.{layers - 1}.hook_resid_post")
    _, cache = run_with_cache(model, input_ids, names=names, **forward_kwargs)
    residuals = torch.stack([cache[name] for name in names])  # [layers + 1, b, p, d_model]
    if positions is not None:
        residuals = residuals[:, :, list(positions)]
    return torch.log_softmax(unembed(model, residuals).float(), dim=-1)


def plot_logit_lens(logprobs: Tensor, target_ids: Tensor, *, labels: Sequence[str] | None = None,
                    title: str = "Logit lens"):
    """A heatmap (layers × positions) of the probability of ``target_ids`` ``[p]`` (e.g. the next tokens)
    from one example's lens ``[layers + 1, p, vocab]``; returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = logprobs.gather(-1, target_ids.view(1, -1, 1).expand(logprobs.shape[0], -1, 1)).squeeze(-1).exp()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * probs.shape[1] + 2), 0.4 * probs.shape[0] + 1.6))
    image = ax.imshow(probs.cpu().numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, origin="lower")
    ax.set(title=title, xlabel="position (target token)", ylabel="layer (residual read)")
    ax.set_yticks(range(probs.shape[0]), [f"{i}" for i in range(probs.shape[0] - 1)] + ["final"])
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=7)
    fig.colorbar(image, ax=ax, label="p(target)")
    fig.tight_layout()
    return fig
