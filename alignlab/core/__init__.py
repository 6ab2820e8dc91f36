"""``alignlab.core``: what every method stands on — records and readers, tokenisation, log-probs, the one
generator, the one training loop, the RL maths, checkpoints, metrics, configs and precision.

It imports nothing from the rest of alignlab but :mod:`alignlab.errors` (checked by ``tests/test_layering.py``).
"""
