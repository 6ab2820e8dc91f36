"""``alignlab.losses``: every preference loss as a pure function of log-probabilities.

The public name of :mod:`alignlab.outer.losses` (where the code, the equations and the conventions
live): one function per method, named after it, each returning ``(per-example losses, metrics)`` and
usable without alignlab's trainer. The names exported here are those registered there with
``register_loss``, so the two never disagree.

Example:
    >>> import torch
    >>> from alignlab import losses
    >>> zeros = torch.zeros(2)
    >>> per_example, metrics = losses.dpo(zeros, zeros, zeros, zeros, beta=0.1)
    >>> round(float(per_example.mean()), 4), sorted(losses.LOSSES)[:3]
    (0.6931, ['alol', 'aot', 'aot_unpaired'])
"""

from alignlab.outer.losses import (
    LOSS_SPECS,
    LOSSES,
    LossOutput,
    LossSpec,
    get_loss,
    get_loss_spec,
    pairwise_losses,
    register_loss,
)

globals().update(LOSSES)  # every registered loss under its own name: `from alignlab.losses import dpo`

__all__ = ["LOSSES", "LOSS_SPECS", "LossOutput", "LossSpec", "get_loss", "get_loss_spec", "pairwise_losses",
           "register_loss", *LOSSES]
