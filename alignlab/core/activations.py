"""Activation functions alignlab adds to ``transformers``' registry, so a model config can name them.

``"solu"``: the Softmax Linear Unit of Elhage et al. 2022 ("Softmax Linear Units"), ``SoLU(x) = x · softmax(x)``
over the MLP's hidden units, followed by a LayerNorm over the same units (the paper's ``LN(SoLU(x))``). The
LayerNorm here has no parameters of its own: its gain and bias would be absorbed by the next linear layer.

Importing this module (``alignlab.core.models`` does before it builds or loads a model) registers it in ``transformers.activations.ACT2FN``, so
a model saved with ``hidden_act="solu"`` loads with ``from_pretrained`` like any other.

Example::

    >>> import torch
    >>> from transformers.activations import ACT2FN
    >>> out = ACT2FN["solu"](torch.tensor([[0.0, 1.0, 2.0]]))
    >>> [round(v, 3) for v in out.mean(-1).tolist()]   # LayerNorm-ed: zero mean per token
    [0.0]
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import ACT2CLS, ACT2FN


class SoLU(nn.Module):
    """``LayerNorm(x · softmax(x))`` over the last dimension (no learned gain or bias)."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        solu = x * torch.softmax(x.float(), dim=-1).to(x.dtype)
        return nn.functional.layer_norm(solu, solu.shape[-1:], eps=self.eps)


ACT2CLS.setdefault("solu", SoLU)
ACT2FN.setdefault("solu", SoLU)
