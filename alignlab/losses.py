"""``alignlab.losses``: every preference loss as a pure function of log-probabilities.

The public name of :mod:`alignlab.outer.losses` (where the code, the equations and the conventions
live): one function per method, named after it, each returning ``(per-example losses, metrics)`` and
usable without alignlab's trainer.

Example:
    >>> import torch
    >>> from alignlab import losses
    >>> zeros = torch.zeros(2)
    >>> per_example, metrics = losses.dpo(zeros, zeros, zeros, zeros, beta=0.1)
    >>> round(float(per_example.mean()), 4), sorted(losses.LOSSES)[:3]
    (0.6931, ['aot', 'aot_unpaired', 'apo'])
"""

from alignlab.outer.losses import (
    LOSSES,
    LossOutput,
    aot,
    aot_unpaired,
    apo,
    bco,
    cpo,
    cringe,
    discopop,
    dpo,
    exo,
    get_loss,
    ipo,
    kto,
    nca,
    orpo,
    pro,
    robust_dpo,
    rrhf,
    sigmoid_norm,
    simpo,
    slic,
    sppo,
    stable_alignment,
)

__all__ = [
    "LOSSES",
    "LossOutput",
    "get_loss",
    "aot",
    "aot_unpaired",
    "apo",
    "bco",
    "cpo",
    "cringe",
    "discopop",
    "dpo",
    "exo",
    "ipo",
    "kto",
    "nca",
    "orpo",
    "pro",
    "robust_dpo",
    "rrhf",
    "sigmoid_norm",
    "simpo",
    "slic",
    "sppo",
    "stable_alignment",
]
